"""`nengtan provision`: a safe, re-runnable identity and an enrollment the receiver can use."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from agent.config import load_config
from agent.identity import load_signer
from nengtan.cli import main
from nengtan.jws import b64url_decode, key_id

INIT = ["provision", "init", "--gateway-id", "gw-a", "--meter", "main:chint-dtsu666:1",
        "--meter", "line2:eastron-sdm630:2", "--broker", "127.0.0.1:1883"]


def _init(tmp_path: Path, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(main, [*INIT, "--dir", str(tmp_path), "--state-dir",
                                       str(tmp_path / "state"), "--json", *extra])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_init_creates_a_private_key_only_its_owner_can_read_and_a_valid_config(tmp_path: Path) -> None:
    out = _init(tmp_path)
    key = Path(str(out["key_file"]))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    config = load_config(Path(str(out["config_file"])))
    assert config.gateway.id == "gw-a" and [m.id for m in config.buses[0].meters] == ["main", "line2"]
    assert load_signer(key).kid == out["kid"] and out["created"] is True


def test_running_init_again_keeps_the_key(tmp_path: Path) -> None:
    first = _init(tmp_path)
    before = Path(str(first["key_file"])).read_bytes()
    second = _init(tmp_path)
    assert second["created"] is False and second["kid"] == first["kid"]
    assert Path(str(first["key_file"])).read_bytes() == before


def test_init_refuses_to_take_over_another_gateways_key_without_replace(tmp_path: Path) -> None:
    first = _init(tmp_path)
    result = CliRunner().invoke(main, ["provision", "init", "--gateway-id", "gw-b", "--meter",
                                       "m:chint-dtsu666:1", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "already belongs to gateway 'gw-a'" in result.output and "--replace" in result.output
    replaced = _init(tmp_path, "--replace")
    assert replaced["kid"] != first["kid"]


def test_init_refuses_a_config_the_agent_would_reject(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["provision", "init", "--gateway-id", "gw-a", "--meter",
                                       "m:no-such-model:1", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output
    assert not (tmp_path / "gateway.key").exists()


def test_enroll_writes_the_public_key_that_matches_its_kid_and_is_idempotent(tmp_path: Path) -> None:
    out = _init(tmp_path)
    args = ["provision", "enroll", "-c", str(out["config_file"]), "--registry", str(tmp_path / "reg"),
            "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    path = Path(json.loads(first.output)["enrollment"])
    record = json.loads(path.read_text())
    assert record["kid"] == out["kid"] == key_id("Ed25519", b64url_decode(record["public_key"]))
    assert "PRIVATE" not in path.read_text()
    mtime = path.stat().st_mtime_ns
    assert CliRunner().invoke(main, args).exit_code == 0
    assert path.stat().st_mtime_ns == mtime


def test_a_world_readable_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    out = _init(tmp_path)
    Path(str(out["key_file"])).chmod(0o644)
    result = CliRunner().invoke(main, ["provision", "enroll", "-c", str(out["config_file"]),
                                       "--registry", str(tmp_path / "reg")])
    assert result.exit_code == 1 and "chmod 600" in result.output
