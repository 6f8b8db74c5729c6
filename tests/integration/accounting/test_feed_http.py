"""The feed's HTTPS + JSON adapter against a real HTTP server started here (http.server in a
thread on 127.0.0.1, plain HTTP or TLS with a certificate from a CA made by the test): what goes
over the wire, retries on a failing server, giving up on a dead port, the platform's certificate
checked against the configured ``ca_file``, and `nengtan receiver feed send` end to end with its
audit log."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from cloud_receiver.accounting.feed import FeedMessage
from cloud_receiver.accounting.feed_send import AuditLog, HttpsJsonAdapter, deliver
from cloud_receiver.rollups import chain_deltas, merge
from cloud_receiver.store import CounterPoint, open_store
from nengtan.cli import main
from nengtan.errors import ConfigError
from tests.integration.uplink.uplink_helpers import Pki

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")


class Platform:
    """A stand-in platform: answers each POST with the next scripted status (200 when the
    script runs out) and keeps what it received."""

    def __init__(self, statuses: list[int], tls: ssl.SSLContext | None = None) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                platform.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = platform.statuses.pop(0) if platform.statuses else 200
                reply = json.dumps({"code": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/upload"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = Platform([])
    yield p
    p.close()


def _msg() -> FeedMessage:
    return FeedMessage("mid-1", "day", "2025-06-01", {"message_id": "mid-1", "名称": "电力"})


def test_posts_the_canonical_body_with_idempotency_headers(platform: Platform,
                                                           tmp_path: Path) -> None:
    adapter = HttpsJsonAdapter(platform.url, token="s3cret", timeout_s=5)
    try:
        d = deliver(adapter, _msg(), AuditLog(tmp_path / "a.jsonl"), sleep=lambda s: None)
    finally:
        adapter.close()
    assert (d.outcome, d.status, d.attempts) == ("accepted", 200, 1)
    ((headers, body),) = platform.received
    assert body == _msg().payload == '{"message_id":"mid-1","名称":"电力"}'.encode()
    assert headers["idempotency-key"] == "mid-1"
    assert headers["x-content-sha256"] == _msg().digest
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["content-type"] == "application/json; charset=utf-8"


def test_a_failing_server_is_retried_until_it_accepts(platform: Platform,
                                                      tmp_path: Path) -> None:
    platform.statuses[:] = [503, 500, 200]
    waits: list[float] = []
    adapter = HttpsJsonAdapter(platform.url, timeout_s=5)
    try:
        d = deliver(adapter, _msg(), AuditLog(tmp_path / "a.jsonl"), retries=3, backoff_s=0.01,
                    sleep=waits.append)
    finally:
        adapter.close()
    assert (d.outcome, d.attempts) == ("accepted", 3)
    assert waits == [0.01, 0.02]
    assert len(platform.received) == 3
    assert len({body for _, body in platform.received}) == 1  # the same bytes each time
    outcomes = [(e["attempt"], e["outcome"], e["status"])
                for e in AuditLog(tmp_path / "a.jsonl").entries()]
    assert outcomes == [(1, "retry", 503), (2, "retry", 500), (3, "accepted", 200)]


def test_a_rejecting_server_is_not_retried(platform: Platform, tmp_path: Path) -> None:
    platform.statuses[:] = [422]
    adapter = HttpsJsonAdapter(platform.url, timeout_s=5)
    try:
        d = deliver(adapter, _msg(), AuditLog(tmp_path / "a.jsonl"), sleep=lambda s: None)
    finally:
        adapter.close()
    assert (d.outcome, d.status, len(platform.received)) == ("rejected", 422, 1)


def test_a_dead_port_fails_after_the_retries(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = HttpsJsonAdapter(f"http://127.0.0.1:{port}/upload", timeout_s=2)
    try:
        d = deliver(adapter, _msg(), AuditLog(tmp_path / "a.jsonl"), retries=2, backoff_s=0.0,
                    sleep=lambda s: None)
    finally:
        adapter.close()
    assert (d.outcome, d.attempts, d.status) == ("failed", 3, None)
    assert "ConnectError" in d.detail


@pytest.fixture
def tls_platform(tmp_path: Path) -> Iterator[tuple[Platform, Path]]:
    """An HTTPS platform whose certificate (for 127.0.0.1) a CA of this test signed; and that
    CA's certificate file, which the system trust store does not know."""
    pki = Pki(tmp_path / "pki")
    leaf = pki.issue("platform", "platform.test", server=True, names=("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf.cert, leaf.key)
    p = Platform([], tls=context)
    yield p, pki.ca_file
    p.close()


def test_over_https_the_platform_is_trusted_through_the_configured_ca_file(
        tls_platform: tuple[Platform, Path], tmp_path: Path) -> None:
    platform, ca_file = tls_platform
    adapter = HttpsJsonAdapter(platform.url, timeout_s=5, ca_file=str(ca_file))
    try:
        d = deliver(adapter, _msg(), AuditLog(tmp_path / "a.jsonl"), sleep=lambda s: None)
    finally:
        adapter.close()
    assert (d.outcome, d.status, d.attempts) == ("accepted", 200, 1)
    assert [body for _, body in platform.received] == [_msg().payload]


def test_over_https_a_certificate_the_ca_file_does_not_vouch_for_is_never_sent_to(
        tls_platform: tuple[Platform, Path], tmp_path: Path) -> None:
    platform, _ = tls_platform
    stranger = Pki(tmp_path / "other-pki", name="Another CA").ca_file
    for ca_file in (None, str(stranger)):  # the system's trust store, then the wrong CA
        adapter = HttpsJsonAdapter(platform.url, timeout_s=5, ca_file=ca_file)
        try:
            d = deliver(adapter, _msg(), AuditLog(tmp_path / "a.jsonl"), retries=1,
                        backoff_s=0.0, sleep=lambda s: None)
        finally:
            adapter.close()
        assert (d.outcome, d.status, d.attempts) == ("failed", None, 2), ca_file
        assert "CERTIFICATE_VERIFY_FAILED" in d.detail, d.detail
    assert platform.received == []  # not one byte of the body went to an unverified server


def test_a_ca_file_that_is_not_there_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        HttpsJsonAdapter("https://127.0.0.1:9/upload", ca_file=str(tmp_path / "missing.pem"))
    assert "At 'feed.ca_file'" in str(info.value) and "missing.pem" in str(info.value)


def _local_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1000)


def test_cli_send_day_then_resend_is_skipped(platform: Platform, tmp_path: Path) -> None:
    db = tmp_path / "state" / "receiver.db"
    db.parent.mkdir()
    store = open_store(db)
    start = _local_ms("2025-06-01T00:00")
    points = [CounterPoint("m1", "active_energy_import", 1, i + 1, start + i * 900_000, 10.0 * i)
              for i in range(97)]  # 96 intervals of 10 kWh
    with store.transaction(lock="gw-1") as txn:
        txn.add_counter_points("gw-1", points)
        txn.adjust_rollups("gw-1", merge(chain_deltas(None, points, None, TZ)))
    store.close()
    config = tmp_path / "receiver.toml"
    config.write_text('[storage]\npath = "state/receiver.db"\n[registry]\ndir = "gateways"\n')
    plant = tmp_path / "plant"
    plant.mkdir()
    (plant / "plant.toml").write_text("""
[plant]
timezone = "Asia/Shanghai"
[[node]]
id = "ent"
kind = "enterprise"
[[point]]
id = "incomer"
node = "ent"
gateway = "gw-1"
meter = "m1"
level = 1
energy_type = "electricity"
use = "production"
""", encoding="utf-8")
    (plant / "feed.toml").write_text(f'[feed]\nenterprise_code = "91410100MA00000000"\n'
                                     f'url = "{platform.url}"\nbackoff_s = 0\n', encoding="utf-8")
    args = ["receiver", "feed", "send", "--config", str(config), "--plant", str(plant),
            "--day", "2025-06-01", "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)
    assert out["delivery"]["outcome"] == "accepted"
    assert out["points"][0]["total"] == 960.0  # 96 × 10 kWh
    assert out["points"][0]["kgce"] == 117.984  # 960 × 0.1229
    assert out["quality"]["completeness_pct"] == 100.0
    sent = json.loads(platform.received[0][1])
    assert sent["period_start"] == "2025-06-01T00:00:00+08:00" and len(
        sent["points"][0]["intervals"]) == 96
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["delivery"]["outcome"] == "already_accepted"
    assert len(platform.received) == 1
    dry = CliRunner().invoke(main, [*args[:-1], "--dry-run"])
    assert dry.exit_code == 0 and "dry run: nothing sent" in dry.output
    audit = CliRunner().invoke(main, ["receiver", "feed", "audit", "--config", str(config),
                                      "--json"])
    entries = json.loads(audit.output)
    assert [e["outcome"] for e in entries] == ["accepted"]
    assert json.loads(entries[0]["body"]) == sent
    assert (tmp_path / "state" / "feed-audit.jsonl").exists()


def test_cli_exits_1_when_the_platform_rejects(platform: Platform, tmp_path: Path) -> None:
    platform.statuses[:] = [400]
    db = tmp_path / "receiver.db"
    open_store(db).close()
    config = tmp_path / "receiver.toml"
    config.write_text('[storage]\npath = "receiver.db"\n[registry]\ndir = "gateways"\n')
    plant = tmp_path / "plant"
    plant.mkdir()
    (plant / "plant.toml").write_text(
        '[[node]]\nid = "ent"\nkind = "enterprise"\n[[point]]\nid = "p"\nnode = "ent"\n'
        'gateway = "g"\nmeter = "m"\nlevel = 1\nenergy_type = "electricity"\nuse = "production"\n',
        encoding="utf-8")
    (plant / "feed.toml").write_text(f'[feed]\nenterprise_code = "X"\nurl = "{platform.url}"\n',
                                     encoding="utf-8")
    result = CliRunner().invoke(main, ["receiver", "feed", "send", "--config", str(config),
                                       "--plant", str(plant), "--month", "2025-06"])
    assert result.exit_code == 1
    assert "was not accepted: rejected" in result.output
