"""One-way (data diode) mode end to end: the real agent daemon publishes to a near broker, a lossy
one-way proxy (hw_tests/diode.py) forwards to a far broker, the real receiver daemon listens
there. No acknowledgement from the far side can reach the agent.

Pass criterion (reliability.md T5): the receiver either holds every cycle the agent committed,
or ``missing_ranges`` lists EXACTLY the cycles it lacks, which are exactly those the diode
dropped every copy of; then ``nengtan agent export`` → ``nengtan receiver import`` (the approved
channel, here a file) fills them, nothing is missing any more, and the energy per meter equals
the emulator's ground truth.

Two chains run side by side from one module fixture (the poll rate is the budget: ~65 s in all):
"random" sends every envelope twice, 1 s apart, through a diode that loses 1 % of all messages
(seeded); "forced" sends each envelope once through a diode that surely loses the envelopes
holding chosen cycles, and then, just before the clean stop, every envelope: a lost tail that
only the final checkpoints can reveal. Both stop the agent cleanly before comparing, so that
every committed cycle has been sealed and sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import tomli_w

from cloud_receiver.store import MissingRange, open_store
from hw_tests.conftest import energies_match, require_mosquitto
from hw_tests.diode import Diode, Seen
from nengtan.broker import Broker, start_broker
from nengtan.stack import GATEWAY_ID, Stack

pytestmark = pytest.mark.hw

EPOCH = 1
# Two meters at 115200 Bd answer well within the 0.2 s poll period: five cycles a second, each
# sealed into its own envelope while the link is up.
METERS = [("main-incomer", "chint-dtsu666", 1), ("press-line", "eastron-sdm630", 2)]
ONE_WAY = {"mode": "one_way", "resend_delay_s": 1, "checkpoint_every_s": 5}
COMMON: dict[str, Any] = {"meters": METERS, "baudrate": 115200, "interval_s": 0.2,
                          "speedup": 600.0, "broker_kind": "mosquitto"}
# 1 % of ~520 messages: about five envelope copies lost (which of the messages, by their order,
# the seed fixes), and a 2.5 % chance that both copies of one envelope are.
ENVELOPES = 250


@dataclass
class OneWayStack(Stack):
    """The usual chain with the broker split in two and a diode between them: the agent talks to
    ``broker`` (near side), the receiver to ``far``."""

    mqtt: dict[str, Any] = field(default_factory=dict)  # extra [outputs.mqtt] keys for the agent
    loss: float = 0.0
    seed: int = 0
    drop: Callable[[Seen], bool] | None = None
    far: Broker | None = None
    diode: Diode | None = None

    def start_broker(self) -> Broker:
        broker = super().start_broker()
        self.far = start_broker(self.workdir / "broker-far", prefer=self.broker_kind)
        return broker

    def provision(self) -> None:
        super().provision()
        assert self.broker is not None and self.far is not None
        agent = tomllib.loads(self.agent_config.read_text())
        agent["outputs"]["mqtt"].update(self.mqtt)
        self.agent_config.write_text(tomli_w.dumps(agent))
        receiver = tomllib.loads(self.receiver_config.read_text())
        receiver["mqtt"]["port"] = self.far.port
        self.receiver_config.write_text(tomli_w.dumps(receiver))

    def start_all(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_emulator()
        broker = self.start_broker()
        assert self.far is not None
        self.provision()
        self.diode = Diode((broker.host, broker.port), (self.far.host, self.far.port),
                           loss=self.loss, seed=self.seed, drop=self.drop).start()
        self.start_receiver()
        # The receiver's session on the far broker must exist before anything crosses the diode.
        self.wait_for("the receiver's subscription", lambda: "subscribed to" in (
            self.workdir / "receiver.log").read_text(errors="replace"), timeout=20)
        self.start_agent()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.diode is not None:
                self.diode.stop()
            if self.far is not None:
                self.far.stop()

    # -- what the test compares ---------------------------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nengtan", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    def agent_buffer(self) -> tuple[set[int], list[tuple[int, int]], int]:
        """The cycles the agent committed, its envelopes (seq, last), how many are unsent."""
        path = self.workdir / "gateway" / "state" / "buffer.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            cycles = {int(r[0]) for r in conn.execute("SELECT seq FROM cycles")}
            envelopes = [(int(a), int(b)) for a, b in
                         conn.execute("SELECT seq, last FROM envelopes ORDER BY seq")]
            unsent = int(conn.execute("SELECT COUNT(*) FROM envelopes WHERE sent_ms IS NULL")
                         .fetchone()[0])
        return cycles, envelopes, unsent

    def sealed_envelopes(self) -> int:
        path = self.workdir / "gateway" / "state" / "buffer.db"
        if not path.exists():
            return 0
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            try:
                return int(conn.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def receiver_view(self) -> tuple[set[int], list[MissingRange], int]:
        """Cycles the receiver stores, its missing ranges, and the messages it has handled."""
        store = open_store(self.receiver_db, create=False)
        try:
            ranges = store.missing_ranges(GATEWAY_ID, EPOCH)
            stats, counters = store.stats(), store.counters()
            stored = {c for s in store.streams(GATEWAY_ID) if s.epoch == EPOCH
                      for c in range(1, s.stored_last + 1)} - {
                c for r in ranges for c in range(r.first, r.last + 1)}
        finally:
            store.close()
        handled = (stats["envelopes"] + stats["checkpoints"] + stats["quarantine"]
                   + counters.get("duplicate", 0) + counters.get("duplicate_checkpoint", 0))
        return stored, ranges, handled

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until everything the diode let through is handled by the receiver."""
        assert self.diode is not None
        diode = self.diode

        def caught_up() -> bool:
            through = diode.stats.forwarded["batch"] + diode.stats.forwarded["checkpoint"]
            return diode.quiet_for() > 0.5 and self.receiver_view()[2] >= through

        self.wait_for("the receiver to handle everything the diode let through", caught_up,
                      timeout=timeout)


def _cycles(ranges: Iterable[tuple[int, int]]) -> set[int]:
    return {c for a, b in ranges for c in range(a, b + 1)}


class ForcedLoss:
    """The diode's chosen losses: every copy of each envelope holding one of ``cycles``, and,
    once ``tail`` is set, every envelope (a tail that only a checkpoint can reveal)."""

    def __init__(self, cycles: set[int]) -> None:
        self.cycles, self.tail = cycles, False

    def __call__(self, seen: Seen) -> bool:
        if seen.kind != "batch" or seen.seq is None or seen.last is None:
            return False
        return self.tail or any(seen.seq <= c <= seen.last for c in self.cycles)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OneWayStack]]:
    """Both chains at once (the test budget is the poll rate): "random" sends every envelope
    twice through a diode that loses 1 % of all messages; "forced" sends each once through one
    that loses the chosen envelopes for sure."""
    require_mosquitto()
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    stacks = {
        "random": OneWayStack(tmp_path_factory.mktemp("random"), **COMMON,
                              mqtt={**ONE_WAY, "redundancy": 2}, loss=0.01, seed=20261122),
        "forced": OneWayStack(tmp_path_factory.mktemp("forced"), **COMMON,
                              mqtt={**ONE_WAY, "redundancy": 1}, drop=ForcedLoss({20, 47, 48})),
    }
    try:
        for stack in stacks.values():
            stack.start_all()
        yield stacks
    finally:
        for stack in stacks.values():
            stack.close()


def check_exact(stack: OneWayStack) -> list[MissingRange]:
    """The T5 criterion on the stopped agent: every committed cycle is stored or listed as
    missing, every listed cycle is truly lacking, and what is missing is exactly what the diode
    dropped every copy of."""
    assert stack.diode is not None
    committed, envelopes, unsent = stack.agent_buffer()
    assert _cycles(envelopes) == committed, "the clean stop left cycles unsealed"
    assert unsent == 0, "one_way counts an envelope sent once written; the stop wrote them all"
    stored, ranges, _ = stack.receiver_view()
    assert not [r for r in ranges if r.status != "missing"], ranges
    missing = _cycles((r.first, r.last) for r in ranges)
    assert stored <= committed
    assert not stored & missing, "a cycle listed as missing is stored"
    assert missing == committed - stored, (
        f"listed {sorted(missing)}, lacking {sorted(committed - stored)}")
    assert missing == _cycles(stack.diode.lost_batches())
    return ranges


def fill(stack: OneWayStack, ranges: list[MissingRange]) -> dict[str, Any]:
    """What a technician does: export the listed ranges at the gateway and import the files on
    the far side (with nothing listed: everything, which must all be duplicates). Then nothing
    is missing and the energy per meter equals the ground truth."""
    committed, _, _ = stack.agent_buffer()
    wanted = [(r.first, r.last) for r in ranges] or [(1, max(committed))]
    files = []
    for first, last in wanted:
        out = stack.workdir / f"export-{first}-{last}.jws"
        done = stack.cli("agent", "export", "--config", str(stack.agent_config), "--from-seq",
                         str(first), "--to-seq", str(last), "--epoch", str(EPOCH),
                         "--out", str(out))
        assert done.returncode == 0 and not done.stderr, done.stderr  # all of it was stored
        files.append(str(out))
    done = stack.cli("receiver", "import", "--config", str(stack.receiver_config), "--json", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    stored, left, _ = stack.receiver_view()
    assert left == [] and stored == committed
    assert energies_match(stack)
    imported: dict[str, Any] = json.loads(done.stdout)
    return imported


def _finish(stack: OneWayStack) -> None:
    stack.mute_emulator()  # freezes the ground truth; later cycles carry only 'bad' readings
    stack.stop("agent")  # clean stop: the rest goes out, every copy owed at once, checkpoints


def test_two_copies_through_a_lossy_diode(runs: dict[str, OneWayStack]) -> None:
    stack = runs["random"]
    stack.wait_for(f"{ENVELOPES} envelopes", lambda: stack.sealed_envelopes() >= ENVELOPES,
                   timeout=ENVELOPES / 2)
    _finish(stack)
    stack.settle()
    assert stack.diode is not None
    dropped = stack.diode.stats.dropped["batch"]
    assert dropped > 0, "the diode lost no envelope copy: nothing was tested"
    ranges = check_exact(stack)
    imported = fill(stack, ranges)
    [result] = imported["files"]
    if not ranges:  # both copies of every envelope rarely get lost: then all are duplicates
        assert result["accepted"] == 0 and result["duplicate"] > ENVELOPES


def test_one_copy_and_forced_loss_lists_exactly_the_lost_ranges(
        runs: dict[str, OneWayStack]) -> None:
    stack = runs["forced"]
    forced = stack.drop
    assert isinstance(forced, ForcedLoss)
    stack.wait_for("cycles past the chosen losses", lambda: stack.sealed_envelopes() >= 60,
                   timeout=60)
    stack.mute_emulator()
    forced.tail = True
    time.sleep(1.0)  # about five cycles whose envelopes all get lost
    stack.stop("agent")
    stack.settle()
    committed, envelopes, _ = stack.agent_buffer()
    ranges = check_exact(stack)
    lost = _cycles(stack.diode.lost_batches() if stack.diode else ())
    assert forced.cycles <= lost
    # Three losses: two in the middle, found between stored envelopes, and the tail, which only
    # the final checkpoints reveal (no stored envelope lies beyond it).
    assert len(ranges) == 3 and ranges[-1].last == max(committed)
    imported = fill(stack, ranges)
    assert sum(f["accepted"] for f in imported["files"]) == len(
        [e for e in envelopes if _cycles([e]) <= lost])
