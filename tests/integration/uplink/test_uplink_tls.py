"""Mutual TLS against a real Mosquitto that requires a client certificate and takes the
certificate's CN as the user name; every certificate is made by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from uplink_helpers import (
    GATEWAY,
    Ledger,
    Mosquitto,
    Pki,
    add_cycles,
    drive,
    forward,
    memory_buffer,
    uplink_config,
)

from agent.outputs.mqtt.uplink import MqttUplink

pytestmark = pytest.mark.integration


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def _mtls_broker(tmp_path: Path, pki: Pki, *, names: tuple[str, ...] = ("localhost", "127.0.0.1")
                 ) -> Mosquitto:
    server = pki.issue("server", "broker", server=True, names=names)
    return Mosquitto(tmp_path / "broker", [
        f"cafile {pki.ca_file}", f"certfile {server.cert}", f"keyfile {server.key}",
        "require_certificate true", "use_identity_as_username true"])


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    broker = _mtls_broker(tmp_path, pki)
    yield broker
    broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_with_its_client_certificate_the_uplink_connects_over_mutual_tls_and_gets_pubacks(
        broker: Mosquitto, pki: Pki, protocol: str) -> None:
    client = pki.issue("gateway", GATEWAY, server=False)
    wake = threading.Event()
    uplink = MqttUplink(uplink_config(broker.port, protocol=protocol, tls=True, ca_file=pki.ca_file,
                                      cert_file=client.cert, key_file=client.key),
                        gateway=GATEWAY, wake=wake)
    buffer, ledger = memory_buffer(), Ledger()
    seqs = add_cycles(buffer, 5)
    try:
        drive(uplink, buffer, ledger, lambda: len(ledger.accepted) == len(seqs), "5 PUBACKs", wake=wake)
    finally:
        uplink.close()
    assert sorted(ledger.accepted) == seqs and ledger.rejected == []
    assert uplink.stats.sessions == 1
    # The broker knew the gateway by its certificate, not by anything it said about itself.
    assert f"u'{GATEWAY}'" in broker.log.read_text()


def _attempts_without_a_session(uplink: MqttUplink, seconds: float) -> list[float]:
    """Drive a failing uplink; return when each connection attempt started."""
    buffer, ledger, wake = memory_buffer(), Ledger(), threading.Event()
    add_cycles(buffer, 3)
    starts: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = uplink.stats.connects
        forward(uplink, buffer, ledger)  # raises nothing, whatever the broker does
        if uplink.stats.connects > before:
            starts.append(time.monotonic())
        assert not uplink.connected and uplink.window == 0
        wake.wait(0.02)
    uplink.close()
    assert ledger.accepted == [] and uplink.stats.sessions == 0
    return starts


def test_without_a_client_certificate_the_broker_refuses_and_the_uplink_retries_with_back_off(
        broker: Mosquitto, pki: Pki) -> None:
    uplink = MqttUplink(uplink_config(broker.port, tls=True, ca_file=pki.ca_file), gateway=GATEWAY)
    starts = _attempts_without_a_session(uplink, 6.0)
    assert len(starts) >= 3, uplink.stats
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # Back-off: 1 s then 2 s then 4 s, each times a jitter in [0.5, 1].
    assert all(later > earlier - 0.1 for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps
    assert uplink.stats.last_error


@pytest.mark.parametrize("trouble", ["unknown CA", "wrong host name"])
def test_a_broker_certificate_that_does_not_verify_is_never_accepted(
        tmp_path: Path, pki: Pki, trouble: str) -> None:
    names = ("mqtt.elsewhere.example",) if trouble == "wrong host name" else ("127.0.0.1",)
    broker = _mtls_broker(tmp_path, pki, names=names)
    trusted = Pki(tmp_path / "other-pki", "Another CA") if trouble == "unknown CA" else pki
    client = pki.issue("gateway", GATEWAY, server=False)
    try:
        uplink = MqttUplink(uplink_config(broker.port, tls=True, ca_file=trusted.ca_file,
                                          cert_file=client.cert, key_file=client.key),
                            gateway=GATEWAY)
        _attempts_without_a_session(uplink, 2.0)
    finally:
        broker.stop()
    assert "certificate verify failed" in uplink.stats.last_error
