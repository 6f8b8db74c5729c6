"""Assemble a bus from model names, and publish its ground truth as JSON for other processes."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from agent.meters import models
from hw_tests.emulator.bus import PtyBus
from hw_tests.emulator.plant import CounterTruth, EmulatedMeter, scaled_clock


def start_bus(meters: list[tuple[str, int]], *, baudrate: int = 9600, parity: str = "N",
              stopbits: int = 1, speedup: float = 1.0, seed: int = 0,
              link: str | os.PathLike[str] | None = None) -> PtyBus:
    """Start serving ``(model name, unit)`` meters on a new pty; the caller closes the bus.

    Every meter shares one emulated clock (``speedup`` emulated seconds per real second) and gets
    its own seed and mean power derived from ``seed`` and its unit, so runs are reproducible;
    ``seed`` also seeds the random bytes of injected faults.
    """
    known = models()
    unknown = sorted({name for name, _ in meters} - set(known))
    if unknown:
        raise KeyError(f"unknown meter model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    clock = scaled_clock(speedup)
    emulated = []
    for name, unit in meters:
        meter_seed = seed * 1000 + unit
        base_kw = random.Random(meter_seed).uniform(2.0, 15.0)
        emulated.append(EmulatedMeter(known[name], unit, base_kw=base_kw, seed=meter_seed,
                                      clock=clock))
    return PtyBus(emulated, baudrate=baudrate, parity=parity, stopbits=stopbits,
                  link=link, seed=seed).start()


def truth_document(bus: PtyBus) -> dict[str, Any]:
    """Per unit: the model and what was served of ``active_energy_import`` (kWh, as decoded);
    under ``counters``, per unit, what was served of every counter (read with ``counter_truth``).
    """
    units, counters = {}, {}
    for unit, meter in sorted(bus.meters.items()):
        truth = meter.truth()
        units[str(unit)] = {"model": meter.model.name, "first": truth.first, "last": truth.last,
                            "count": truth.count, "requests": bus.stats[unit].requests}
        counters[str(unit)] = {name: {"first": t.first, "last": t.last, "count": t.count}
                               for name, t in sorted(meter.counter_truths().items())}
    return {"port": bus.port, "written_at": time.time(), "units": units, "counters": counters}


def counter_truth(path: str | os.PathLike[str], unit: int, measurement: str) -> CounterTruth:
    """What unit ``unit`` served of counter ``measurement``, from a truth file (``write_truth``);
    nothing served (count 0) if it has not served that counter yet."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    served = doc.get("counters", {}).get(str(unit), {}).get(measurement)
    if served is None:
        return CounterTruth(None, None, 0)
    return CounterTruth(served["first"], served["last"], served["count"])


def write_truth(bus: PtyBus, path: str | os.PathLike[str]) -> None:
    """Write the truth file atomically, so a reader never sees half of it."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(truth_document(bus), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)
