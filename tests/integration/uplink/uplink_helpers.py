"""A real Mosquitto with a config written by the test, a throw-away PKI, an observer client, and
a loop that drives the uplink the way ``Agent.forward`` does."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from agent.buffer import Buffer, MemoryBuffer
from agent.outputs.mqtt.config import MqttConfig
from agent.outputs.mqtt.uplink import MqttUplink
from nengtan.envelope import Reading, seal
from nengtan.jws import Ed25519Signer
from nengtan.broker import free_port
from tests.helpers import mosquitto_binary, wait_for

GATEWAY = "gw-uplink-01"


class Mosquitto:
    """One broker process on a free loopback port, with the listener options given."""

    def __init__(self, workdir: Path, listener_options: Iterable[str] = ("allow_anonymous true",)):
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "mosquitto.log"
        lines = ["per_listener_settings true", f"listener {self.port} 127.0.0.1",
                 *listener_options, "persistence false", "log_dest stderr", "log_type all"]
        if os.geteuid() == 0:
            lines.append("user root")  # the test's files are not the mosquitto user's to read
        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return self.process.poll() is not None  # died: the assert below says why

        wait_for(listening, "mosquitto to listen")
        assert self.process.poll() is None, self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


# -- a test PKI ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    pem = Pem(directory / f"{stem}.pem", directory / f"{stem}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pem.key.chmod(0o600)
    return pem


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class Pki:
    """A CA made for one test, and certificates it signs (P-256, valid for a day)."""

    def __init__(self, directory: Path, name: str = "Nengtan test CA") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                           critical=False)
            .sign(self._key, hashes.SHA256()))
        self.ca_file = directory / f"{name.replace(' ', '-').lower()}.pem"
        self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, common_name: str, *, server: bool,
              names: Iterable[str] = ("localhost", "127.0.0.1")) -> Pem:
        """A leaf certificate; a server one is valid for ``names`` (host names or addresses)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name))
            .issuer_name(self._cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_general_name(n) for n in names]), critical=False)
        return _write(self.directory, stem, builder.sign(self._key, hashes.SHA256()), key)


# -- the agent side ------------------------------------------------------------------------------
def uplink_config(port: int, **overrides: object) -> MqttConfig:
    values: dict[str, object] = dict(
        host="127.0.0.1", port=port, protocol="5", topic_prefix="nengtan/v1", keepalive_s=10,
        max_readings_per_envelope=100, inflight=5, username=None, password_file=None, tls=False,
        ca_file=None)
    values.update(overrides)
    return MqttConfig(**values)  # type: ignore[arg-type]


def memory_buffer() -> MemoryBuffer:
    signer = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    return MemoryBuffer(gateway=GATEWAY, sealer=lambda envelope: seal(signer, envelope))


def add_cycles(buffer: Buffer, count: int) -> list[int]:
    now_ms = int(time.time() * 1000)
    return [buffer.add([Reading("m1", "active_energy_import", now_ms + i, 100.0 + i, "good")],
                       taken_ms=now_ms + i, time_synced=True) for i in range(count)]


@dataclass
class Ledger:
    """Every verdict the buffer was told, in order: what 'exactly once' is checked against."""

    accepted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)


def forward(uplink: MqttUplink, buffer: Buffer, ledger: Ledger) -> None:
    """One turn of the agent loop's forwarding, as ``Agent.forward`` does it."""
    verdicts = uplink.pump()
    if verdicts.accepted or verdicts.rejected:
        buffer.end(verdicts.accepted, verdicts.rejected)
        ledger.accepted += verdicts.accepted
        ledger.rejected += verdicts.rejected
    window = uplink.window
    if window <= 0:
        return
    # One reading per envelope, so that every cycle is an envelope of its own to account for.
    for sealed in buffer.begin(max_envelopes=window, max_readings=1):
        if not uplink.publish(sealed):
            buffer.end([], [sealed.seq])
            ledger.rejected.append(sealed.seq)


def drive(uplink: MqttUplink, buffer: Buffer, ledger: Ledger, until: Callable[[], bool],
          what: str, *, wake: threading.Event, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; uplink: {uplink.stats}")
        wake.wait(0.05)
        wake.clear()
        forward(uplink, buffer, ledger)


# -- an observer on the broker ------------------------------------------------------------------
class Observer:
    """A plain paho subscriber that records (topic, payload, retained) for the topics given."""

    def __init__(self, port: int, topics: Iterable[str], *, tls: ssl.SSLContext | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"observer-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        if not subscribed.wait(10):
            raise AssertionError("the observer could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
