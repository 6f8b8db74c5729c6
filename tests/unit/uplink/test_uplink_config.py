"""The uplink's config keys, TLS context and keepalive, checked without opening a socket."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import parse_config
from agent.outputs.mqtt.config import MqttConfig, mqtt_config
from agent.outputs.mqtt.schema import SCHEMA
from agent.outputs.mqtt.uplink import SIDE_SLOTS, MqttUplink, paho_keepalive, tls_context
from nengtan.errors import ConfigError

INPUTS = {"modbus_tcp": [{"host": "10.0.0.5", "meters": [{"id": "m1", "model": "chint-dtsu666",
                                                          "unit": 1}]}]}


def _problems(mqtt: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gateway": {"id": "gw"}, "inputs": INPUTS, "outputs": {"mqtt": mqtt}})
    return list(caught.value.problems)


def test_the_new_keys_have_safe_defaults() -> None:
    config = mqtt_config({"host": "mqtt.plant.example"})
    assert config == MqttConfig("mqtt.plant.example", 1883, "5", "nengtan/v1", 30, 5000, 20, None,
                                None, False, None, cert_file=None, key_file=None, status_every_s=60)


def test_mutual_tls_paths_become_paths() -> None:
    config = mqtt_config({"host": "h", "tls": True, "ca_file": "/etc/nengtan/ca.pem",
                          "cert_file": "/etc/nengtan/gw.pem", "key_file": "/etc/nengtan/gw.key",
                          "topic_prefix": "plant/v1/", "status_every_s": 30})
    assert (config.ca_file, config.cert_file, config.key_file) == (
        Path("/etc/nengtan/ca.pem"), Path("/etc/nengtan/gw.pem"), Path("/etc/nengtan/gw.key"))
    assert config.topic_prefix == "plant/v1" and config.status_every_s == 30


def test_a_client_certificate_needs_its_key_and_tls() -> None:
    assert _problems({"host": "h", "tls": True, "cert_file": "c.pem"}) == [
        "At 'outputs.mqtt': 'key_file' is a dependency of 'cert_file'"]
    assert _problems({"host": "h", "tls": True, "key_file": "k.pem"}) == [
        "At 'outputs.mqtt': 'cert_file' is a dependency of 'key_file'"]
    assert _problems({"host": "h", "tls": False, "cert_file": "c.pem", "key_file": "k.pem"}) == [
        "At 'outputs.mqtt.tls': True was expected"]


def test_there_is_no_key_that_turns_certificate_verification_off() -> None:
    assert not [k for k in SCHEMA["properties"] if "insecure" in k or "verify" in k]
    assert _problems({"host": "h", "tls": True, "tls_insecure": True}) == [
        "At 'outputs.mqtt': Additional properties are not allowed ('tls_insecure' was unexpected)"]


def test_the_keepalive_given_to_paho_keeps_the_one_and_a_half_promise() -> None:
    for keepalive_s in [2, 3, *range(5, 3601)]:  # what the test uses, and what the schema allows
        sent = paho_keepalive(keepalive_s)
        # paho: a PINGREQ after `sent` s without traffic (checked once per ≤ 1 s loop turn),
        # then up to `sent` s more for the PINGRESP (checked the same way).
        assert sent >= 1 and 2 * sent + 1 <= 1.5 * keepalive_s, keepalive_s


def _self_signed(directory: Path) -> tuple[Path, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_file, key_file, other_key = directory / "gw.pem", directory / "gw.key", directory / "x.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for path, k in ((key_file, key), (other_key, ec.generate_private_key(ec.SECP256R1()))):
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return cert_file, key_file, other_key


def _tls(tmp_path: Path, **paths: Path) -> MqttConfig:
    return MqttConfig("127.0.0.1", 8883, "5", "nengtan/v1", 30, 100, 5, None, None, True,
                      paths.get("ca_file"), paths.get("cert_file"), paths.get("key_file"))


def test_the_tls_context_verifies_the_broker_and_refuses_anything_older_than_tls_1_2(
        tmp_path: Path) -> None:
    cert_file, key_file, _ = _self_signed(tmp_path)
    context = tls_context(_tls(tmp_path, ca_file=cert_file, cert_file=cert_file, key_file=key_file))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    cert_file, _, other_key = _self_signed(tmp_path)
    with pytest.raises(OSError, match="cannot use cert_file"):
        tls_context(_tls(tmp_path, ca_file=cert_file, cert_file=cert_file, key_file=other_key))


def test_every_connection_carries_the_last_will_and_room_for_the_side_messages() -> None:
    config = mqtt_config({"host": "127.0.0.1", "inflight": 7})
    uplink = MqttUplink(config, gateway="gw01")
    client = uplink._new_client()  # builds the client; connects nothing
    assert client.will_topic == "nengtan/v1/gw01/state"
    assert client.will_payload is not None
    assert json.loads(client.will_payload) == {"v": 1, "gw": "gw01", "state": "offline",
                                               "reason": "lost"}
    assert client.max_inflight_messages == 7 + SIDE_SLOTS
    assert (uplink.topic, uplink.status_topic) == ("nengtan/v1/gw01/batch", "nengtan/v1/gw01/status")


def test_a_missing_certificate_file_is_an_error_to_retry_not_a_crash(tmp_path: Path) -> None:
    config = mqtt_config({"host": "127.0.0.1", "tls": True, "cert_file": str(tmp_path / "nope.pem"),
                          "key_file": str(tmp_path / "nope.key")})
    uplink = MqttUplink(config, gateway="gw01")
    verdicts = uplink.pump()
    assert verdicts.accepted == verdicts.rejected == []
    assert "nope.pem" in uplink.stats.last_error and uplink.stats.connects == 1
    uplink.pump()  # backing off: no second attempt at once
    assert uplink.stats.connects == 1
    assert not uplink.connected and uplink.window == 0
    assert not uplink.status_ready and not uplink.publish_status(b"{}")
    uplink.close()


def test_the_delivery_mode_keys_default_to_acknowledged_with_a_checkpoint_every_5_min() -> None:
    config = mqtt_config({"host": "h"})
    assert (config.mode, config.one_way, config.checkpoint_every_s) == ("acknowledged", False, 300)
    assert (config.redundancy, config.resend_delay_s) == (2, 30.0)


def test_one_way_checkpoints_every_minute_unless_told_otherwise() -> None:
    config = mqtt_config({"host": "h", "mode": "one_way"})
    assert (config.one_way, config.checkpoint_every_s, config.redundancy) == (True, 60, 2)
    config = mqtt_config({"host": "h", "mode": "one_way", "checkpoint_every_s": 300,
                          "redundancy": 3, "resend_delay_s": 2.5})
    assert (config.checkpoint_every_s, config.redundancy, config.resend_delay_s) == (300, 3, 2.5)
    assert mqtt_config({"host": "h", "checkpoint_every_s": 30}).checkpoint_every_s == 30


def test_the_delivery_mode_keys_are_validated() -> None:
    assert parse_config({"gateway": {"id": "gw"}, "inputs": INPUTS, "outputs": {"mqtt": {
        "host": "h", "mode": "one_way", "redundancy": 1, "resend_delay_s": 1,
        "checkpoint_every_s": 5}}}).mqtt.redundancy == 1
    assert _problems({"host": "h", "mode": "diode"}) == [
        "At 'outputs.mqtt.mode': 'diode' is not one of ['acknowledged', 'one_way']"]
    assert _problems({"host": "h", "mode": "one_way", "redundancy": 0}) == [
        "At 'outputs.mqtt.redundancy': 0 is less than the minimum of 1"]
    assert _problems({"host": "h", "mode": "one_way", "resend_delay_s": 0.5}) == [
        "At 'outputs.mqtt.resend_delay_s': 0.5 is less than the minimum of 1"]
    assert _problems({"host": "h", "checkpoint_every_s": 1}) == [
        "At 'outputs.mqtt.checkpoint_every_s': 1 is less than the minimum of 5"]


def test_redundancy_without_one_way_is_refused_rather_than_silently_ignored() -> None:
    assert _problems({"host": "h", "redundancy": 3}) == [
        "At 'outputs.mqtt': 'mode' is a required property"]
    assert _problems({"host": "h", "mode": "acknowledged", "resend_delay_s": 5}) == [
        "At 'outputs.mqtt.mode': 'one_way' was expected"]
