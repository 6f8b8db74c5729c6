"""`nengtan demo`: the whole chain on this machine, printing energy and carbon as it arrives.

Four emulated meters of two real models on a virtual RS-485 port → the agent (pymodbus RTU,
SQLite buffer, signed envelopes) → an MQTT broker → the receiver (verify, store, aggregate).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import click

from cloud_receiver.config import load_config as load_receiver_config
from cloud_receiver.report import Report, build_report
from cloud_receiver.store import open_store
from nengtan.clikit import CONTEXT_SETTINGS, handle_errors
from nengtan.errors import NengtanError
from nengtan.stack import Stack


def _figures(stack: Stack) -> Report | None:
    if not stack.receiver_db.exists():
        return None
    config = load_receiver_config(stack.receiver_config)
    store = open_store(stack.receiver_db, create=False)
    try:
        return build_report(store, config.carbon)
    except NengtanError:
        return None
    finally:
        store.close()


def render(stack: Stack, report: Report | None, elapsed: float) -> str:
    broker = stack.broker
    head = [f"Nengtan demo — {elapsed:5.0f} s — {len(stack.meters)} emulated meters on {stack.port} "
            f"({stack.baudrate} 8N1, plant time ×{stack.speedup:g}) → agent → "
            f"{broker.kind if broker else '?'} 127.0.0.1:{broker.port if broker else '?'} "
            f"(MQTT {broker.protocol if broker else '?'}) → receiver"]
    if report is None or not report.rows:
        return "\n".join(head + [f"waiting for the first verified readings … "
                                 f"(agent cycles committed: {stack.agent_cycles()})"])
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for row in report.rows:
        t = totals[row.meter]
        t[0] += row.kwh
        t[1] += row.kgce
        t[2] += row.kgco2
        t[3] += row.intervals
    models = {m: model for m, model, _ in stack.meters}
    lines = head + ["", f"{'meter':<14} {'model':<16} {'kWh':>11} {'kgce':>10} {'kgCO2':>10} "
                        f"{'intervals':>9}"]
    for meter in sorted(totals):
        kwh, kgce, kgco2, n = totals[meter]
        lines.append(f"{meter:<14} {models.get(meter, '?'):<16} {kwh:>11.3f} {kgce:>10.3f} "
                     f"{kgco2:>10.3f} {int(n):>9}")
    all_kwh = sum(t[0] for t in totals.values())
    lines.append(f"{'total':<31} {all_kwh:>11.3f} {sum(t[1] for t in totals.values()):>10.3f} "
                 f"{sum(t[2] for t in totals.values()):>10.3f}")
    g, c = report.factors.grid_co2, report.factors.coal
    quarantined = sum(report.quarantine.values())
    lines += ["", f"kgce = kWh × {c.value} {c.unit} ({c.key}; {c.source})",
              f"kgCO2 = kWh × {g.value} {g.unit} ({g.key}; {g.source})",
              f"duplicates dropped: {report.duplicates}   quarantined: {quarantined}   "
              f"counter anomalies: {len(report.anomalies)}"]
    return "\n".join(lines)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Agent poll period, s.")
@click.option("--speedup", type=float, default=60.0, show_default=True,
              help="Emulated plant seconds per real second (energy accumulates this much faster).")
@click.option("--broker", "broker_kind", type=click.Choice(["auto", "mosquitto", "amqtt"]),
              default="auto", show_default=True, help="auto = Mosquitto if installed, else amqtt.")
@click.option("--region", default="henan", show_default=True, help="Grid CO2 factor region.")
@click.option("--year", type=int, default=2023, show_default=True, help="Grid CO2 factor year.")
@click.option("--regime", type=click.Choice(["statistical", "carbon_market"]), default="statistical",
              show_default=True, help="Which published grid factor series to use.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep all state and logs here (default: a temporary directory, removed after).")
@handle_errors
def demo(duration: float | None, interval: float, speedup: float, broker_kind: str, region: str,
         year: int, regime: str, workdir: Path | None) -> None:
    """Run emulated meters → agent → broker → receiver and print energy and carbon per meter.

    Example:

        nengtan demo --duration 60 --region henan --year 2023
    """
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="nengtan-demo-")) if workdir is None else workdir
    stack = Stack(root, interval_s=interval, speedup=speedup, broker_kind=broker_kind,
                  carbon={"regime": regime, "region": region, "year": year})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    interactive = sys.stdout.isatty()
    try:
        stack.start_all()
        while not stop.wait(2.0):
            elapsed = time.monotonic() - started
            screen = render(stack, _figures(stack), elapsed)
            click.echo(("\033[2J\033[H" if interactive else "\n") + screen)
            for name in ("agent", "receiver", "emulator"):
                if not stack.alive(name):
                    raise NengtanError(f"the {name} stopped; see {root / (name + '.log')}")
            if duration is not None and elapsed >= duration:
                break
    finally:
        stack.close()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        else:
            click.echo(f"state and logs kept in {root}")
