"""Filling a gap across a data diode by hand: `nengtan agent export` writes the stored envelopes
exactly as signed, `nengtan receiver import` ingests them through the normal pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.buffer import SqliteBuffer
from agent.cli import agent
from cloud_receiver.cli import receiver
from cloud_receiver.store import MissingRange, open_store
from nengtan.checkpoint import Checkpoint, seal_checkpoint
from nengtan.envelope import ClockInfo, Reading, envelope_hash, seal
from nengtan.jws import Ed25519Signer, b64url

GATEWAY = "gw-diode-01"
SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
T0 = 1_763_769_600_000


class Site:
    """A gateway's state dir and config, and a receiver's config and registry, side by side."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        self.agent_config = root / "agent.toml"
        self.agent_config.write_text(tomli_w.dumps({
            "gateway": {"id": GATEWAY, "state_dir": str(self.state)},
            "inputs": {"modbus_tcp": [{"host": "10.0.0.5", "meters": [
                {"id": "main", "model": "chint-dtsu666", "unit": 1}]}]},
            "outputs": {"mqtt": {"host": "diode.local", "mode": "one_way"}}}))
        (root / "gateways").mkdir()
        (root / "gateways" / f"{GATEWAY}.json").write_text(json.dumps({
            "gateway": GATEWAY, "alg": SIGNER.alg, "kid": SIGNER.kid,
            "public_key": b64url(SIGNER.public_bytes), "enrolled_at": "2025-11-20T09:00:00+08:00"}))
        self.receiver_config = root / "receiver.toml"
        self.receiver_config.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
        self.tokens: dict[int, str] = {}

    def seal_cycles(self, cycles: int) -> None:
        clock = ClockInfo("boot", 1_000, T0)
        buffer = SqliteBuffer(self.state / "buffer.db", gateway=GATEWAY,
                              sealer=lambda env: seal(SIGNER, env), clock=lambda: clock)
        for i in range(1, cycles + 1):
            buffer.add([Reading("main", "active_energy_import", T0 + i * 1000, 100.0 + i, "good")],
                       taken_ms=T0 + i * 1000, time_synced=True)
        sealed = buffer.begin(max_envelopes=100, max_readings=1)
        buffer.end([s.seq for s in sealed], [])  # one_way: sent once written
        self.tokens = {s.seq: s.token for s in sealed}
        buffer.close()

    def export(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(agent, ["export", "--config", str(self.agent_config), *args])
        return result.exit_code, result.output

    def import_(self, *files: Path) -> tuple[int, str]:
        result = CliRunner().invoke(receiver, ["import", "--config", str(self.receiver_config),
                                               "--json", *map(str, files)])
        return result.exit_code, result.output

    def missing(self) -> list[MissingRange]:
        store = open_store(self.root / "r.db", create=False)
        try:
            return store.missing_ranges(GATEWAY, 1)
        finally:
            store.close()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_a_missing_range_is_exported_as_signed_and_filled_by_import(site: Site) -> None:
    site.seal_cycles(6)
    # The far side got 1, 2 and 6, and a checkpoint; 3..5 were lost on the way.
    head = Checkpoint(GATEWAY, 1, 6, envelope_hash(site.tokens[6]), 6)
    arrived = site.root / "arrived.jws"
    arrived.write_text("".join(site.tokens[s] + "\n" for s in (1, 2, 6))
                       + seal_checkpoint(SIGNER, head) + "\n")
    code, out = site.import_(arrived)
    assert code == 0, out
    assert json.loads(out)["files"][0] == {"file": str(arrived), "accepted": 4, "duplicate": 0,
                                           "quarantined": {}, "readings": 3}
    assert site.missing() == [MissingRange(3, 5, "missing")]

    carried = site.root / "usb" / "gw-3-5.jws"
    carried.parent.mkdir()
    code, out = site.export("--from-seq", "3", "--to-seq", "5", "--epoch", "1", "--out", str(carried))
    assert code == 0 and "3 envelope(s), cycles 3..5 of epoch 1" in out
    assert carried.read_text().splitlines() == [site.tokens[3], site.tokens[4], site.tokens[5]]
    code, out = site.import_(carried)
    assert code == 0 and json.loads(out)["files"][0]["accepted"] == 3
    assert site.missing() == []
    code, out = site.import_(carried)  # safe to re-run: duplicates, nothing stored twice
    assert code == 0 and json.loads(out)["files"][0]["duplicate"] == 3


def test_export_says_which_wanted_cycles_it_does_not_hold(site: Site) -> None:
    site.seal_cycles(3)
    out_file = site.root / "x.jws"
    code, out = site.export("--from-seq", "2", "--to-seq", "9", "--out", str(out_file))
    assert code == 0
    assert "not in the buffer: cycles 4..9" in out
    assert len(out_file.read_text().splitlines()) == 2


def test_export_refuses_what_it_cannot_do_and_leaves_no_file(site: Site) -> None:
    site.seal_cycles(3)
    out_file = site.root / "x.jws"
    code, out = site.export("--from-seq", "5", "--to-seq", "2", "--out", str(out_file))
    assert code == 2 and "below --from-seq" in out
    code, out = site.export("--from-seq", "7", "--to-seq", "9", "--out", str(out_file))
    assert code == 1 and "no stored envelope holds any cycle of 7..9" in out
    code, out = site.export("--from-seq", "1", "--to-seq", "2", "--epoch", "2", "--out", str(out_file))
    assert code == 1 and "holds epoch 1, not 2" in out
    code, out = site.export("--from-seq", "1", "--to-seq", "2", "--out",
                            str(site.root / "no" / "dir" / "x.jws"))
    assert code == 1 and "cannot write" in out
    assert not out_file.exists() and not list(site.root.glob(".x.jws*"))


def test_import_quarantines_what_does_not_verify_and_exits_1(site: Site) -> None:
    site.seal_cycles(2)
    header, payload, signature = site.tokens[2].split(".")
    forged = f"{header}.{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    mixed = site.root / "mixed.jws"
    mixed.write_text(f"{site.tokens[1]}\n\nnot a token\n{forged}\n")
    code, out = site.import_(mixed)
    assert code == 1
    assert json.loads(out)["files"][0] == {
        "file": str(mixed), "accepted": 1, "duplicate": 0, "readings": 1,
        "quarantined": {"bad_signature": 1, "malformed": 1}}
