"""How close the agent polls a mixed 10-meter RS-485 bus to the wire's physical limit.

For each line setting it runs, on the timing-true emulated bus (hw_tests/emulator):
  - the agent's own poller (coalesced reads, inter-frame silence, no library sleeps), and
  - a baseline in the same run: one request per point, as ThingsBoard's gateway or mbmd do,
and prints requests per cycle and bus utilisation U = T_min / T_measured, where T_min is the
theoretical minimum cycle time of the requests actually sent (shared/reference/meters.md §2.2,
with each meter's configured turnaround) and T_measured the median measured cycle.

Usage:  .venv/bin/python bench/bus_efficiency.py [--cycles 5] [--json]

A pty carries no parity bit, and this kernel refuses to switch parity on a pty, so "8E1" is run
as 8N2 on the agent side: both are 11-bit characters, so the wire timing is identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient

from agent.config import BusConfig, MeterConfig
from agent.inputs.modbus_rtu.bus import rtu_poller
from agent.meters import LineTiming, models
from hw_tests.emulator import start_bus

MIX = ["chint-dtsu666", "eastron-sdm630", "chint-ddsu666", "acrel-adl400", "eastron-sdm120",
       "abb-b23", "janitza-umg96rm", "schneider-iem3x55", "chint-dtsu666", "eastron-sdm630"]
LINES = [("9600 8N1", 9600, "N", 1, 0.90), ("19200 8E1", 19200, "N", 2, None),
         ("115200 8N1", 115200, "N", 1, 0.80)]


@dataclass
class Result:
    line: str
    meters: int
    points: int
    requests: int
    t_min_s: float
    measured_s: float
    baseline_requests: int
    baseline_t_min_s: float
    baseline_measured_s: float
    target: float | None

    @property
    def utilisation(self) -> float:
        return self.t_min_s / self.measured_s

    @property
    def baseline_utilisation(self) -> float:
        return self.baseline_t_min_s / self.baseline_measured_s


def run_line(name: str, baud: int, parity: str, stopbits: int, cycles: int,
             target: float | None) -> Result:
    mix = [(model, unit) for unit, model in enumerate(MIX, start=1)]
    available = models()
    timing = LineTiming(baud, parity, stopbits)  # 8N2 and 8E1 both take 11 bits per character
    meters = tuple(MeterConfig(f"m{unit}", available[model], unit, 60, 60) for model, unit in mix)
    with start_bus(mix, baudrate=baud, parity=parity, stopbits=stopbits) as bus:
        config = BusConfig("rtu", bus.port, baud, parity, stopbits, 500, 60, meters)
        poller = rtu_poller(config)
        poller.open()
        plan = [(m, poller.plan(m.id)) for m in meters]
        t_min = sum(timing.transaction_s(b.count, m.model.turnaround_ms / 1000)
                    for m, blocks in plan for b in blocks)
        durations = []
        for _ in range(cycles):
            started = time.perf_counter()
            for m in meters:
                result = poller.read(m.id)
                assert {r.quality for r in result.readings} == {"good"}, f"{m.id} read failed"
            durations.append(time.perf_counter() - started)
        poller.close()
        baseline = baseline_cycle(bus.port, baud, parity, stopbits, meters, cycles)
    points = [p for m in meters for p in m.model.points.values()]
    baseline_t_min = sum(timing.transaction_s(p.count, m.model.turnaround_ms / 1000)
                         for m in meters for p in m.model.points.values())
    return Result(name, len(meters), len(points), sum(len(b) for _, b in plan), t_min,
                  statistics.median(durations), len(points), baseline_t_min, baseline, target)


def baseline_cycle(port: str, baud: int, parity: str, stopbits: int,
                   meters: tuple[MeterConfig, ...], cycles: int) -> float:
    """One pymodbus request per point, back to back, as a per-value gateway polls."""
    client = ModbusSerialClient(port, framer=FramerType.RTU, baudrate=baud, parity=parity,
                                stopbits=stopbits, timeout=0.5, retries=0)
    client.connect()
    durations = []
    for _ in range(max(1, cycles // 2)):
        started = time.perf_counter()
        for m in meters:
            for p in m.model.points.values():
                read = client.read_holding_registers if p.function == 3 else client.read_input_registers
                response = read(p.address, count=p.count, device_id=m.unit)
                assert not response.isError()
        durations.append(time.perf_counter() - started)
    client.close()  # type: ignore[no-untyped-call]
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run_line(name, baud, parity, stop, args.cycles, target)
               for name, baud, parity, stop, target in LINES]
    if args.json:
        print(json.dumps([{**r.__dict__, "utilisation": r.utilisation,
                           "baseline_utilisation": r.baseline_utilisation} for r in results], indent=1))
        return
    print(f"10-meter mixed bus: {', '.join(MIX)}")
    print(f"{'line':<11} {'points':>6} {'req/cycle':>9} {'baseline':>8} {'T_min s':>8} "
          f"{'cycle s':>8} {'U':>6} {'target':>6} {'baseline cycle s':>16} {'speed-up':>8}")
    for r in results:
        target = f"{r.target:.2f}" if r.target else "-"
        print(f"{r.line:<11} {r.points:>6} {r.requests:>9} {r.baseline_requests:>8} {r.t_min_s:>8.3f} "
              f"{r.measured_s:>8.3f} {r.utilisation:>6.3f} {target:>6} {r.baseline_measured_s:>16.3f} "
              f"{r.baseline_measured_s / r.measured_s:>7.1f}x")
    missed = [r.line for r in results if r.target and r.utilisation < r.target]
    print("targets met" if not missed else f"TARGET MISSED: {', '.join(missed)}")


if __name__ == "__main__":
    main()
