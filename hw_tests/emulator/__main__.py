"""Run the emulated bus as its own process, for the demo and for tests of the real agent daemon.

Example::

    python -m hw_tests.emulator --link /tmp/ttyNengtan --baud 9600 --parity N \\
        --meter chint-dtsu666:1 --meter eastron-sdm630:2 --speedup 60 --truth truth.json

Prints ``READY <pty path>`` once serving; exits cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from agent.meters import models
from hw_tests.emulator.rig import start_bus, write_truth

_TRUTH_EVERY_S = 0.2  # the truth file trails the wire by at most this much


def _meter(text: str) -> tuple[str, int]:
    name, sep, unit = text.rpartition(":")
    if not sep or not unit.isdigit() or not 1 <= int(unit) <= 247:
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL:UNIT, UNIT in 1..247")
    if name not in models():
        raise argparse.ArgumentTypeError(f"{name!r}: unknown model; known: {', '.join(models())}")
    return name, int(unit)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hw_tests.emulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meter", action="append", type=_meter, required=True, metavar="MODEL:UNIT",
                   help="an emulated meter; repeat for more (e.g. eastron-sdm630:2)")
    p.add_argument("--link", help="symlink to create to the pty (replaced if it is a symlink)")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    p.add_argument("--speedup", type=float, default=1.0,
                   help="emulated seconds per real second (energy accumulates that much faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truth", help="JSON file of the counter values served, kept current")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    units = [unit for _, unit in args.meter]
    if len(set(units)) != len(units):
        _parser().error("each --meter needs its own unit id")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    mute = threading.Event()

    def on_mute(signum: int, frame: FrameType | None) -> None:
        mute.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # SIGUSR1 silences every meter from the next request on, while an answer already on the wire
    # completes: tests freeze the ground truth without cutting a frame in half.
    signal.signal(signal.SIGUSR1, on_mute)
    try:
        bus = start_bus(args.meter, baudrate=args.baud, parity=args.parity,
                        stopbits=args.stopbits, speedup=args.speedup, seed=args.seed,
                        link=args.link)
    except (OSError, ValueError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
    try:
        if args.truth:
            write_truth(bus, args.truth)
        print(f"READY {bus.port}", flush=True)
        written = bus.served_version
        while not stop.wait(_TRUTH_EVERY_S):
            if mute.is_set():
                mute.clear()
                for unit in bus.meters:
                    bus.set_faults(unit, silent=True)
            if not bus.is_serving:  # the serving thread died; its traceback is on stderr
                return 1
            if args.truth and bus.served_version != written:
                written = bus.served_version
                write_truth(bus, args.truth)
    finally:
        bus.close()
        if args.truth:
            write_truth(bus, args.truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
