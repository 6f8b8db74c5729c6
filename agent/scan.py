"""Find the meters on an RS-485 line and name each one's model from its registers.

As mbmd's ``scan``: one unit at a time, a pause between units, plausibility before a name. But a
silent unit costs one timeout, not one per model: the narrowest FC03 probe tests presence. Models
with the same probe registers share a request; one whose probe is in ``[low, high]`` gets at most
two more for its checks (phase voltages, frequency: nominal ±10 %). Models passing all and equally
many checks are told apart by up to two reads of registers only one defines; else: "ambiguous".
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusException

from agent.meters import Block, LineTiming, MeterModel, Point, decode_point, models
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors
from nengtan.errors import MeterError, MeterProtocolError, MeterTimeout, NengtanError
from nengtan.measurements import lookup

PAUSE_S = 0.02  # between units, so a late answer dies out before the next request (mbmd: 40 ms)
TOLERANCE = 0.10  # plausible: within ±10 % of nominal, as mbmd accepts a probed voltage
#: What a check compares with the nominal voltage (V) or frequency (Hz), times this factor.
CHECKED = {**dict.fromkeys(("voltage_l1_n", "voltage_l2_n", "voltage_l3_n", "frequency"), 1.0),
           **dict.fromkeys(("voltage_l1_l2", "voltage_l2_l3", "voltage_l3_l1"), math.sqrt(3))}
NOTHING_FOUND_HINT = ("no meter answered. Check the A/B wires (swap them if unsure), --baudrate and "
                      "--parity (often 9600 8N1 or 8E1), 120 Ω termination at both ends, and --units.")
Reader = Callable[[Block], list[int]]  # one unit's registers; raises MeterTimeout, MeterProtocolError
Progress = Callable[[int, int, int, "ScanResult | None"], None]  # unit, done, total, result if any


class ScanPortError(NengtanError):
    """The serial port cannot be opened for a scan."""

    hint = ("Is the adapter plugged in (ls /dev/rs485-*)? Is this user in group 'dialout'? Is the agent "
            "polling the port (systemctl stop nengtan-agent)?")


@dataclass(frozen=True)
class Check:
    """A value read to identify a unit. ``kind``: "probe" or "check" (in ``[low, high]``), or "extra":
    a register only this model defines among equals (a value counts for, a refusal against, 0 neither)."""

    measurement: str
    value: float | None  # None: refused, silent, or not a finite number
    kind: str = "extra"
    low: float | None = None
    high: float | None = None

    @property
    def ok(self) -> bool:
        v, low, high = self.value, self.low, self.high
        return v is not None and (v != 0 if low is None or high is None else low <= v <= high)

    @property
    def refutes(self) -> bool:
        return not self.ok and (self.kind != "extra" or self.value is None)


@dataclass(frozen=True)
class ScanResult:
    """A unit that answered. ``status``: identified (one model fits), preferred (several fit, it has
    the most plausible points), ambiguous, implausible (probe fits, checks fail) or unknown.
    ``candidates``: fitting models, best first, else probe-fitting ones; ``checks``: of the first."""

    unit: int
    status: str
    model: str | None
    candidates: tuple[str, ...]
    checks: tuple[Check, ...]
    verdict: str
    requests: int
    notes: tuple[str, ...] = ()

    def value(self, measurement: str) -> float | None:
        return next((c.value for c in self.checks if c.measurement == measurement), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checks": [{**asdict(c), "ok": c.ok} for c in self.checks],
                "voltage": self.value("voltage_l1_n"), "frequency": self.value("frequency")}


def _fmt(value: float | None, measurement: str) -> str:
    return "-" if value is None else f"{value:.4g} {lookup(measurement).unit}"


def _blocks(points: Iterable[Point], max_registers: int) -> list[Block]:
    """Requests for ``points``, joining only adjoining registers: some meters refuse a read over a hole."""
    groups: list[tuple[int, int, int, list[Point]]] = []  # function, start, end, points
    for p in sorted(points, key=lambda p: (p.function, p.registers)):
        lo, hi = p.registers[0], p.registers[-1] + 1
        function, start, end, joined = groups[-1] if groups else (0, 0, 0, [])
        if function == p.function and lo <= end and hi - start <= max_registers:
            groups[-1] = (function, start, max(hi, end), [*joined, p])
        else:
            groups.append((p.function, lo, hi, [p]))
    return [Block(function, lo, hi - lo, tuple(ps)) for function, lo, hi, ps in groups]


def probe_plan(model: MeterModel) -> list[Block]:
    """The requests that identify ``model``: its probe's block first, then at most two more."""
    probe = model.points[model.probe.measurement]
    blocks = _blocks({probe, *(model.points[m] for m in CHECKED if m in model.points)}, model.max_registers)
    first = next(b for b in blocks if probe in b.points)
    rest = sorted((b for b in blocks if b is not first),  # frequency first, then the most points
                  key=lambda b: (all(p.measurement != "frequency" for p in b.points), -len(b.points)))
    return [first, *rest[:2]]


class _Registers:
    """What one unit answered, so models that share registers share the request."""

    def __init__(self, read: Reader) -> None:
        self._read, self._cache = read, dict[tuple[int, int], int]()
        self.requests, self.notes = 0, list[str]()

    def fetch(self, block: Block) -> bool:
        """Read ``block`` unless already read; False if the unit stayed silent."""
        addresses = range(block.start, block.start + block.count)
        if all((block.function, a) in self._cache for a in addresses):
            return True
        self.requests += 1
        try:
            self._cache.update(((block.function, a), r) for a, r in zip(addresses, self._read(block)))
        except MeterError as exc:  # MeterTimeout (silence) or MeterProtocolError (an exception reply)
            self.notes.append(f"FC{block.function:02d} {block.start:#06x}+{block.count}: {exc}")
            return not isinstance(exc, MeterTimeout)
        return True

    def value(self, point: Point) -> float | None:
        try:
            return decode_point(point, lambda function, address: self._cache[(function, address)])
        except ValueError:  # not read, refused, or not a finite number
            return None


def _score(checks: Sequence[Check]) -> tuple[bool, int]:
    return not any(c.refutes for c in checks), sum(c.ok for c in checks)


def identify(unit: int, read: Reader, *, catalog: Mapping[str, MeterModel], nominal_voltage: float,
             nominal_frequency: float = 50.0) -> ScanResult | None:
    """Probe one unit through ``read`` and name its model; None if the unit stayed silent."""
    plans = {name: probe_plan(model) for name, model in catalog.items()}
    limits = {m: (f * n * (1 - TOLERANCE), f * n * (1 + TOLERANCE)) for m, f in CHECKED.items()
              for n in [nominal_frequency if m == "frequency" else nominal_voltage]}
    probes = sorted({(p[0].function, p[0].start, p[0].count): p[0] for p in plans.values()}.values(),
                    key=lambda b: (-b.count, b.function, b.start))
    probes.remove(presence := min(probes, key=lambda b: (b.function != 3, b.count)))  # FC03: all have it
    registers = _Registers(read)
    if not registers.fetch(presence):
        return None
    for block in probes:  # widest first, so that one request covers the narrower at its address
        registers.fetch(block)
    candidates: dict[str, list[Check]] = {}
    for name, model in catalog.items():
        probe, value = model.probe, registers.value(model.points[model.probe.measurement])
        if value is None or not probe.low <= value <= probe.high:
            continue
        for block in plans[name][1:]:
            registers.fetch(block)
        candidates[name] = [Check(probe.measurement, value, "probe", probe.low, probe.high)]
        candidates[name] += [Check(p.measurement, registers.value(p), "check", *limits[p.measurement])
                             for block in plans[name] for p in block.points if p.measurement in limits]
    best = max(map(_score, candidates.values()), default=(False, 0))
    tied = [m for m, checks in candidates.items() if best[0] and _score(checks) == best]
    where: Callable[[Point], tuple[int, int, str]] = lambda p: (p.function, p.address, p.value_type)
    for name in tied if len(tied) > 1 else ():
        shared = {where(p) for m in tied if m != name for p in catalog[m].points.values()}
        own = [p for p in catalog[name].points.values() if where(p) not in shared]
        for block in _blocks(own, catalog[name].max_registers)[:2]:
            registers.fetch(block)
            candidates[name] += [Check(p.measurement, registers.value(p)) for p in block.points]
    return judge(unit, candidates, requests=registers.requests, notes=tuple(registers.notes))


def judge(unit: int, candidates: Mapping[str, Sequence[Check]], *, requests: int = 0,
          notes: tuple[str, ...] = ()) -> ScanResult:
    """Name the model of one unit from the checks of each model whose probe fits."""
    score = {m: _score(checks) for m, checks in candidates.items()}
    ranked = sorted(candidates, key=lambda m: (not score[m][0], -score[m][1], m))
    fits = [m for m in ranked if score[m][0]]
    top = [m for m in fits if score[m] == score[fits[0]]]
    checks = tuple(candidates[ranked[0]]) if ranked else ()
    model, status, verdict = None, "unknown", "answers, model unknown"
    if ranked and not fits:
        bad = ", ".join(f"{c.measurement} {_fmt(c.value, c.measurement)}" for c in checks if c.refutes)
        status, verdict = "implausible", f"probe fits {ranked[0]}, but implausible: {bad}"
    elif len(top) > 1:
        status, verdict = "ambiguous", f"ambiguous: {' or '.join(top)} read alike"
    elif fits:
        model, status = fits[0], "identified" if len(fits) == 1 else "preferred"
        verdict = f"identified; {' or '.join(fits[1:])} fit less well" if fits[1:] else "identified"
    return ScanResult(unit, status, model, tuple(fits or ranked), checks, verdict, requests, notes)


def parse_units(text: str) -> range:
    """``"1-247"`` or ``"17"`` → those unit ids; ValueError unless 1 ≤ low ≤ high ≤ 247."""
    low, _, high = text.partition("-")
    first, last = int(low), int(high or low)
    if not 1 <= first <= last <= 247:
        raise ValueError(f"{text!r}: unit ids run from 1 to 247, as low-high")
    return range(first, last + 1)


def _read(client: ModbusSerialClient, wait_s: float, line: LineTiming, unit: int, block: Block) -> list[int]:
    # pymodbus times the whole exchange: allow the wait for the meter plus both frames' wire time.
    client.comm_params.timeout_connect = wait_s + line.transaction_s(block.count)
    read = client.read_holding_registers if block.function == 3 else client.read_input_registers
    try:
        response = read(block.start, count=block.count, device_id=unit)
    except ModbusException as exc:
        raise MeterTimeout("no answer", unit_id=unit, address=block.start) from exc
    if response.isError():
        code = getattr(response, "exception_code", None)
        raise MeterProtocolError(f"exception {code}", unit_id=unit, address=block.start, code=code)
    return list(response.registers)  # if short, the missing registers read as unreadable


def scan_bus(port: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1,
             units: Iterable[int] = range(1, 248), timeout_s: float = 0.08,
             nominal_voltage: float = 230.0, nominal_frequency: float = 50.0,
             pause_s: float = PAUSE_S, on_progress: Progress | None = None) -> list[ScanResult]:
    """Probe ``units`` in turn; return those that answered. ``timeout_s``: the wait for an answer
    to start; each request adds its frames' wire time. Raise ScanPortError if ``port`` won't open."""
    wanted, catalog, line = list(units), models(), LineTiming(baudrate, parity, stopbits)
    client = ModbusSerialClient(port, framer=FramerType.RTU, baudrate=baudrate, bytesize=8, parity=parity,
                                stopbits=stopbits, retries=0, reconnect_delay=0)
    if not client.connect():
        raise ScanPortError(f"cannot open {port}" + ("" if os.path.exists(port) else ": no such device"))
    found: list[ScanResult] = []
    try:
        for done, unit in enumerate(wanted, 1):
            time.sleep(pause_s if done > 1 else 0)
            read = functools.partial(_read, client, timeout_s, line, unit)
            result = identify(unit, read, catalog=catalog, nominal_voltage=nominal_voltage,
                              nominal_frequency=nominal_frequency)
            found += [result] if result else []
            if on_progress is not None:
                on_progress(unit, done, len(wanted), result)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return found


@click.command(name="scan", context_settings=CONTEXT_SETTINGS)
@click.option("--port", required=True, help="Serial device of the RS-485 adapter.")
@click.option("--baudrate", type=int, default=9600, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--stopbits", type=click.Choice(["1", "2"]), default="1", show_default=True)
@click.option("--units", type=parse_units, default="1-247", show_default=True, metavar="LOW-HIGH")
@click.option("--timeout-ms", type=click.IntRange(5), default=80, show_default=True,
              help="How long a unit may take to start replying; the frames' wire time is added.")
@click.option("--nominal-voltage", type=float, default=230.0, show_default=True, help="L-N volts, ±10 %.")
@click.option("--nominal-frequency", type=float, default=50.0, show_default=True, help="Hz, ±10 %.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def scan_command(port: str, baudrate: int, parity: str, stopbits: str, units: range, timeout_ms: int,
                 nominal_voltage: float, nominal_frequency: float, as_json: bool) -> None:
    """Find the meters on an RS-485 line and name their models (stop the agent first).

    Example:

        nengtan agent scan --port /dev/rs485-main --units 1-60
    """
    logging.getLogger("pymodbus").addHandler(logging.NullHandler())  # we report silence ourselves

    def progress(unit: int, done: int, total: int, result: ScanResult | None) -> None:
        if result is not None or done % 25 == 0:
            what = f"{result.model or '?'}, {result.verdict}" if result else "no answer"
            click.echo(f"{done}/{total} unit {unit}: {what}", err=True)

    started = time.monotonic()
    results = scan_bus(port, baudrate=baudrate, parity=parity, stopbits=int(stopbits), units=units,
                       timeout_s=timeout_ms / 1000, nominal_voltage=nominal_voltage,
                       nominal_frequency=nominal_frequency, on_progress=progress)
    elapsed = time.monotonic() - started
    click.echo(f"scanned {len(units)} unit(s) in {elapsed:.1f} s", err=True)
    if as_json:
        emit_json({"port": port, "settings": f"{baudrate} 8{parity}{stopbits}", "scanned": len(units),
                   "seconds": round(elapsed, 2), "found": [r.to_dict() for r in results]})
    elif results:
        click.echo(f"{'UNIT':>4}  {'MODEL':<20} {'VOLTAGE':>9} {'FREQUENCY':>9}  VERDICT")
        for r in results:
            volts, hertz = (_fmt(r.value(m), m) for m in ("voltage_l1_n", "frequency"))
            model = r.model or " or ".join(r.candidates) or "?"
            click.echo(f"{r.unit:>4}  {model:<20} {volts:>9} {hertz:>9}  {r.verdict}")
    if not results:
        click.echo(f"hint: {NOTHING_FOUND_HINT}", err=as_json)
