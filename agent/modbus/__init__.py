"""What every Modbus input shares: the per-meter schedule (``_schedule``), the poller and its
failure policy (``_poller``), bus statistics (``_stats``) and schema pieces (``schema_parts``).

Import from the submodules: this package is imported while the config schema is being built, so
it must not pull in the config loader itself.
"""
