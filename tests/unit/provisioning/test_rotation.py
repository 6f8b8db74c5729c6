"""`nengtan provision rotate`: the gateway's key rotation, from the buffer's next cycle on, with a
record the receiver accepts; refused while the agent runs; safe to re-run after a crash."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.buffer import SqliteBuffer, buffer_holder, next_signed_cycle
from agent.config import load_config
from agent.identity import load_signer
from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.rotation import apply_rotation
from cloud_receiver.store import open_store
from nengtan.cli import main
from nengtan.envelope import Reading, seal
from nengtan.errors import IdentityError
from nengtan.jws import Ed25519Signer, ES256Signer
from nengtan.rotation import parse_rotation
from provisioning.identity import enrollment_for, write_enrollment
from provisioning.rotation import generate_key, rotate_gateway, staged_path

GATEWAY = "gw-a"
REPO = Path(__file__).resolve().parents[3]
T0 = 1_748_736_000_000


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    result = CliRunner().invoke(main, [
        "provision", "init", "--gateway-id", GATEWAY, "--meter", "main:chint-dtsu666:1",
        "--dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "state"), "--json"])
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["config_file"])


def open_buffer(config_file: Path) -> SqliteBuffer:
    config = load_config(config_file)
    signer = load_signer(config.gateway.key_file)
    config.gateway.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteBuffer(config.gateway.state_dir / "buffer.db", gateway=GATEWAY,
                        sealer=lambda envelope: seal(signer, envelope))


def add_cycles(buffer: SqliteBuffer, first: int, count: int) -> None:
    for seq in range(first, first + count):
        buffer.add([Reading("main", "active_energy_import", T0 + seq * 10_000, 100.0 + seq, "good")],
                   taken_ms=T0 + seq * 10_000, time_synced=True)


def run_agent(config_file: Path, *, sealed: int, unsealed: int) -> list[str]:
    """What the agent does between two stops: commit cycles and seal the first ``sealed``;
    return the tokens it sealed."""
    buffer = open_buffer(config_file)
    try:
        first = buffer.stats().last_seq + 1
        add_cycles(buffer, first, sealed)
        sent = buffer.begin(max_envelopes=100, max_readings=1000)
        buffer.end([s.seq for s in sent], [])
        tokens = [s.token for s in sent]
        add_cycles(buffer, first + sealed, unsealed)
    finally:
        buffer.close()
    return tokens


def rotate(config_file: Path, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, ["provision", "rotate", "-c", str(config_file), "--json",
                                       *args])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_rotate_swaps_the_key_from_the_first_unsealed_cycle_and_keeps_the_old_one(
        config_file: Path) -> None:
    key_file = load_config(config_file).gateway.key_file
    old = load_signer(key_file)
    run_agent(config_file, sealed=3, unsealed=2)

    out = rotate(config_file)

    new = load_signer(key_file)
    assert out["created"] is True and (out["old_kid"], out["new_kid"]) == (old.kid, new.kid)
    assert (out["from_epoch"], out["from_seq"], out["alg"]) == (1, 4, "Ed25519")
    retired = Path(str(out["retired_key"]))
    assert load_signer(retired).kid == old.kid and stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    record_file = Path(str(out["record"]))
    assert record_file.parent == key_file.parent
    record = parse_rotation(record_file.read_text(), str(record_file))
    assert record.verify_old(old.verification_key())
    assert (record.payload.gateway, record.payload.new.kid, record.payload.point) == (
        GATEWAY, new.kid, (1, 4))
    assert not staged_path(key_file).exists()


def test_running_rotate_again_shows_the_pending_rotation_until_the_agent_signs_with_it(
        config_file: Path) -> None:
    key_file = load_config(config_file).gateway.key_file
    run_agent(config_file, sealed=2, unsealed=0)
    first = rotate(config_file)
    again = rotate(config_file)
    assert again == {**first, "created": False}
    assert load_signer(key_file).kid == first["new_kid"]

    run_agent(config_file, sealed=1, unsealed=0)  # the new key has signed cycle 3
    later = rotate(config_file)
    assert later["created"] is True and later["old_kid"] == first["new_kid"]
    assert (later["from_epoch"], later["from_seq"]) == (1, 4)


@contextmanager
def agent_process(buffer: Path) -> Iterator[int]:
    """Another process with the buffer open, as the running agent has it; yields its pid."""
    code = ("import sys; from pathlib import Path; from agent.buffer import SqliteBuffer; "
            "b = SqliteBuffer(Path(sys.argv[1]), gateway='gw-a', sealer=lambda e: 'x'); "
            "b.stats(); print('open', flush=True); sys.stdin.read(); b.close()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(buffer)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
        yield proc.pid
    finally:
        proc.communicate("", timeout=30)


def test_rotate_refuses_while_the_agent_has_the_buffer_open(config_file: Path) -> None:
    config = load_config(config_file)
    key_file, buffer = config.gateway.key_file, config.gateway.state_dir / "buffer.db"
    run_agent(config_file, sealed=1, unsealed=1)
    before = key_file.read_bytes()
    assert buffer_holder(buffer) is None
    with agent_process(buffer) as pid:
        assert buffer_holder(buffer) == pid
        result = CliRunner().invoke(main, ["provision", "rotate", "-c", str(config_file)])
    assert result.exit_code == 1
    assert f"buffer.db is open in process {pid}" in result.stderr
    assert "systemctl stop nengtan-agent" in result.stderr
    assert key_file.read_bytes() == before
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["agent.toml", "gateway.key"]
    assert buffer_holder(buffer) is None
    assert rotate(config_file)["created"] is True  # once the agent is stopped


def test_the_record_is_accepted_by_the_receiver_and_the_agent_chain_continues(
        config_file: Path, tmp_path: Path) -> None:
    config = load_config(config_file)
    registry_dir = tmp_path / "registry"
    write_enrollment(enrollment_for(config), registry_dir)
    before = run_agent(config_file, sealed=3, unsealed=2)
    out = rotate(config_file)
    after = run_agent(config_file, sealed=1, unsealed=0)  # seals 4-5 and 6 with the new key

    store = open_store(":memory:")
    try:
        registry = Registry(store, registry_dir)
        registry.reload()
        applied = apply_rotation(store, Path(str(out["record"])))
        assert applied.changed
        registry.refresh()
        ingestor = Ingestor(store, registry)
        outcomes = [ingestor.ingest(f"nengtan/v1/{GATEWAY}/batch", t.encode())
                    for t in before + after]
        assert [o.status for o in outcomes] == [Status.ACCEPTED] * len(outcomes)
        assert store.stats()["readings"] == 6
    finally:
        store.close()


def test_an_es256_key_can_replace_an_ed25519_one(config_file: Path) -> None:
    out = rotate(config_file, "--alg", "ES256")
    assert out["alg"] == "ES256"
    assert isinstance(load_signer(load_config(config_file).gateway.key_file), ES256Signer)
    assert (out["from_epoch"], out["from_seq"]) == (1, 1)  # no buffer yet: the first epoch


def test_a_staged_key_left_by_a_crash_is_reused_not_replaced(config_file: Path) -> None:
    key_file = load_config(config_file).gateway.key_file
    staged = staged_path(key_file)
    staged.write_bytes(generate_key("Ed25519"))
    staged.chmod(0o600)
    staged_kid = load_signer(staged).kid
    with pytest.raises(IdentityError, match=r"staged Ed25519 key .* --alg Ed25519"):
        rotate_gateway(gateway=GATEWAY, key_file=key_file,
                       state_dir=load_config(config_file).gateway.state_dir, alg="ES256")
    assert rotate(config_file)["new_kid"] == staged_kid
    assert isinstance(load_signer(key_file), Ed25519Signer)


def test_the_agent_cannot_take_an_hs256_key() -> None:
    with pytest.raises(IdentityError, match="HS256 is for MicroPython nodes"):
        generate_key("HS256")
    result = CliRunner().invoke(main, ["provision", "rotate", "--alg", "HS256"])
    assert result.exit_code == 2


def test_next_signed_cycle_without_a_buffer_is_the_next_epochs_first(tmp_path: Path) -> None:
    assert next_signed_cycle(tmp_path / "buffer.db") == (1, 1)
    (tmp_path / "epoch").write_text("4\n")
    assert next_signed_cycle(tmp_path / "buffer.db") == (5, 1)
