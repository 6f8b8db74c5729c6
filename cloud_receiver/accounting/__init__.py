"""Energy-carbon accounting over the receiver's stored counters (issue 6).

The plant model and every other operator-entered fact live in a plant data directory of TOML/CSV
files (reviewable, versionable); machine-produced state stays in the receiver store. Modules:
``model`` (hierarchy, metering points, replacements), ``factors`` (versioned conversion factors),
``energy`` (interval energy per metering point), ``report``/``render`` (monthly/annual reports).
"""
