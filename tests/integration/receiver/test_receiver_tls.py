"""The receiver's broker login and TLS through a real Mosquitto and a real ``service.run``:
mutual TLS with the certificate's CN as the broker user (and an ACL that holds it to reading),
a broker certificate from a CA we do not trust, and a password file right and wrong. Every
certificate is made by the test."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_receiver.config import ReceiverConfig, parse_config
from cloud_receiver.retire import session_present
from cloud_receiver.service import run
from cloud_receiver.store import open_store
from nengtan.tls import broker_tls_context
from tests.helpers import installed_tool, wait_for
from tests.integration.uplink.uplink_helpers import Mosquitto, Pem, Pki
from tests.unit.receiver.receiver_helpers import GATEWAY, TOPIC, Batches, enrollment_record, new_signer

pytestmark = pytest.mark.integration

RECEIVER = "nengtan-receiver"  # its certificate's CN, and its broker user name


def _mosquitto_passwd() -> str:
    return installed_tool("mosquitto_passwd", "mosquitto", "/usr/bin")


class Receiver:
    """``service.run`` in a thread, as ``nengtan receiver run`` runs it in the main one."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.stop, self.ready = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(config,), daemon=True)
        self.thread.start()

    def _main(self, config: ReceiverConfig) -> None:
        try:
            run(config, self.stop, ready=self.ready)
        except BaseException as exc:  # surfaced by close(), not lost in the thread
            self.error = exc

    def close(self) -> float:
        """Stop it; return how long that took."""
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        assert self.error is None, self.error
        return time.monotonic() - started


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def batches(tmp_path: Path) -> Batches:
    found = Batches(new_signer())
    (tmp_path / "gateways").mkdir()
    (tmp_path / "gateways" / f"{GATEWAY}.json").write_text(
        json.dumps(enrollment_record(found.signer, GATEWAY)))
    return found


def _config(tmp_path: Path, port: int, **mqtt_keys: object) -> ReceiverConfig:
    return parse_config({
        "mqtt": {"host": "127.0.0.1", "port": port, **mqtt_keys},
        "storage": {"path": "receiver.db"}, "registry": {"dir": "gateways"},
    }, base_dir=tmp_path)


def _stored(config: ReceiverConfig) -> int:
    store = open_store(config.storage, create=False)
    try:
        return int(store.stats()["envelopes"])
    finally:
        store.close()


def _publish(port: int, payload: str, *, client_pem: Pem | None = None, ca_file: Path | None = None,
             login: tuple[str, str] | None = None) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    if client_pem is not None:
        client.tls_set_context(broker_tls_context(ca_file, client_pem.cert, client_pem.key))
    if login is not None:
        client.username_pw_set(*login)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(TOPIC, payload.encode(), qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def _mtls_broker(tmp_path: Path, pki: Pki) -> Mosquitto:
    server = pki.issue("server", "broker", server=True)
    acl = tmp_path / "acl"
    # Gateways may write only under their own id; the receiver may only read.
    acl.write_text(f"pattern write nengtan/v1/%u/#\n\nuser {RECEIVER}\n"
                   "topic read nengtan/v1/+/batch\ntopic read nengtan/v1/+/checkpoint\n")
    return Mosquitto(tmp_path / "broker", [
        f"cafile {pki.ca_file}", f"certfile {server.cert}", f"keyfile {server.key}",
        "require_certificate true", "use_identity_as_username true", f"acl_file {acl}"])


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_over_mutual_tls_the_receiver_subscribes_and_stores_a_published_envelope(
        tmp_path: Path, pki: Pki, batches: Batches, protocol: str) -> None:
    broker = _mtls_broker(tmp_path, pki)
    mine, gateway = pki.issue("receiver", RECEIVER, server=False), pki.issue("gw", GATEWAY, server=False)
    # Relative paths: taken from the config's directory, as a deployed config would have them.
    config = _config(tmp_path, broker.port, protocol=protocol, tls=True,
                     ca_file=str(pki.ca_file.relative_to(tmp_path)),
                     cert_file=str(mine.cert.relative_to(tmp_path)),
                     key_file=str(mine.key.relative_to(tmp_path)))
    receiver = Receiver(config)
    try:
        wait_for(receiver.ready.is_set, "the receiver to subscribe over mutual TLS")
        _publish(broker.port, batches.seal(1), client_pem=gateway, ca_file=pki.ca_file)
        wait_for(lambda: _stored(config) == 1, "the envelope to be stored")
        receiver.close()
        # `nengtan receiver retire` checks for the kept session through the same settings.
        assert session_present(config.mqtt, clean=False)
    finally:
        receiver.stop.set()
        receiver.thread.join(timeout=10)
        broker.stop()
    # The broker knew the receiver by its certificate, not by anything it said about itself.
    assert f"u'{RECEIVER}'" in broker.log.read_text()


def test_with_a_ca_that_did_not_sign_the_broker_it_never_subscribes_logs_why_and_keeps_trying(
        tmp_path: Path, pki: Pki, batches: Batches, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cloud_receiver")
    broker = _mtls_broker(tmp_path, pki)
    mine = pki.issue("receiver", RECEIVER, server=False)
    other = Pki(tmp_path / "other-pki", "Another CA")
    config = _config(tmp_path, broker.port, tls=True, ca_file=str(other.ca_file),
                     cert_file=str(mine.cert), key_file=str(mine.key))
    receiver = Receiver(config)

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("cannot reach the broker")]

    try:
        # paho waits 1 s after the first failure: a second attempt shows it keeps trying.
        wait_for(lambda: len(failures()) >= 2, "two failed connection attempts")
        assert not receiver.ready.is_set() and receiver.thread.is_alive()
    finally:
        took = receiver.close()
        broker.stop()
    assert all("certificate verify failed" in f for f in failures()), failures()
    assert took < 2.0  # paho's back-off sleeps in steps of at most 1 s, watching for the stop
    assert not receiver.ready.is_set()
    assert _stored(config) == 0


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = _mosquitto_passwd()
    password_file = tmp_path / "broker-passwd"
    for i, (user, password) in enumerate([(RECEIVER, "s3cret receiver"), (GATEWAY, "gw pass")]):
        subprocess.run([passwd, *(["-c"] if i == 0 else []), "-b", str(password_file), user,
                        password], check=True, capture_output=True)
    password_file.chmod(0o600)
    broker = Mosquitto(tmp_path / "broker", ["allow_anonymous false",
                                             f"password_file {password_file}"])
    yield broker
    broker.stop()


def test_with_the_password_from_its_file_the_receiver_logs_in_and_stores(
        tmp_path: Path, password_broker: Mosquitto, batches: Batches) -> None:
    (tmp_path / "receiver.pw").write_text("s3cret receiver\n")  # the newline is not part of it
    config = _config(tmp_path, password_broker.port, username=RECEIVER,
                     password_file="receiver.pw")
    receiver = Receiver(config)
    try:
        wait_for(receiver.ready.is_set, "the receiver to log in and subscribe")
        _publish(password_broker.port, batches.seal(1), login=(GATEWAY, "gw pass"))
        wait_for(lambda: _stored(config) == 1, "the envelope to be stored")
    finally:
        receiver.close()


def test_with_a_wrong_password_the_broker_refuses_it_and_it_never_subscribes(
        tmp_path: Path, password_broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cloud_receiver")
    (tmp_path / "receiver.pw").write_text("not the password\n")
    config = _config(tmp_path, password_broker.port, username=RECEIVER,
                     password_file="receiver.pw")
    (tmp_path / "gateways").mkdir()
    receiver = Receiver(config)

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("broker refused the connection")]

    try:
        # paho waits 1 s after a refusal: a second one shows it keeps trying.
        wait_for(lambda: len(refusals()) >= 2, "the broker to refuse the login twice")
        assert not receiver.ready.is_set()
    finally:
        receiver.close()
    # Mosquitto 2.0 answers a wrong password with "Not authorized" (0x87), not 0x86.
    assert all(r.endswith(("Not authorized", "Bad user name or password"))
               for r in refusals()), refusals()
    assert not receiver.ready.is_set()
    # Only the password was wrong: with the right one in the file, the same config logs in.
    (tmp_path / "receiver.pw").write_text("s3cret receiver\n")
    receiver = Receiver(config)
    try:
        wait_for(receiver.ready.is_set, "the receiver to log in with the right password")
    finally:
        receiver.close()
