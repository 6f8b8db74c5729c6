"""Broker login and TLS keys of [mqtt]: validated without I/O, every mistake named at its path;
the files are read when a client is made, and a file that cannot be used is a ConfigError
naming its key. No sockets: paho clients are built, never connected."""

from __future__ import annotations

import logging
import ssl
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest

import cloud_receiver
from cloud_receiver.config import SCHEMA, MqttConfig, parse_config
from cloud_receiver.ingest import Ingestor
from cloud_receiver.retire import session_present
from cloud_receiver.service import Subscriber, _client
from nengtan.errors import ConfigError
from tests.integration.uplink.uplink_helpers import Pki

MINIMAL: dict[str, Any] = {"storage": {"path": "receiver.db"}, "registry": {"dir": "gateways"}}
SAMPLE = Path(cloud_receiver.__file__).parent / "receiver.sample.toml"
AUTH_KEYS = ("username", "password_file", "tls", "ca_file", "cert_file", "key_file")


def problems(mqtt: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "mqtt": mqtt}, "test.toml")
    return list(caught.value.problems)


def mqtt_config(tmp_path: Path, **keys: Any) -> MqttConfig:
    return parse_config({**MINIMAL, "mqtt": keys}, base_dir=tmp_path).mqtt


def client_error(config: MqttConfig) -> list[str]:
    subscriber = Subscriber(cast(Ingestor, None), "nengtan/v1/+/batch")
    with pytest.raises(ConfigError) as caught:
        _client(config, subscriber)
    return list(caught.value.problems)


# -- validation ----------------------------------------------------------------------------------
def test_by_default_the_receiver_logs_in_as_nobody_without_tls(tmp_path: Path) -> None:
    config = mqtt_config(tmp_path)
    assert (config.username, config.password_file, config.tls) == (None, None, False)
    assert (config.ca_file, config.cert_file, config.key_file) == (None, None, None)


def test_every_file_is_taken_relative_to_the_config_and_none_is_opened(tmp_path: Path) -> None:
    config = mqtt_config(tmp_path, username="receiver", password_file="secrets/pw", tls=True,
                         ca_file="pki/ca.pem", cert_file="/etc/r.pem", key_file="pki/r.key")
    assert config.username == "receiver" and config.tls is True
    assert config.password_file == tmp_path / "secrets/pw"  # none of these files exists
    assert (config.ca_file, config.cert_file, config.key_file) == (
        tmp_path / "pki/ca.pem", Path("/etc/r.pem"), tmp_path / "pki/r.key")


def test_a_certificate_without_its_key_tls_or_a_password_without_a_user_are_all_named() -> None:
    assert problems({"cert_file": "r.pem", "password_file": "pw", "port": 0}) == [
        "At 'mqtt.port': 0 is less than the minimum of 1",
        "At 'mqtt.key_file': required key is missing (cert_file is set; mutual TLS takes both)",
        "At 'mqtt.tls': must be true when cert_file is set (used only over TLS)",
        "At 'mqtt.username': required key is missing (password_file is set; the broker takes "
        "a password only with a user name)",
    ]


def test_a_key_without_its_certificate_and_a_ca_with_tls_off_are_named() -> None:
    assert problems({"key_file": "r.key", "ca_file": "ca.pem", "tls": False}) == [
        "At 'mqtt.cert_file': required key is missing (key_file is set; mutual TLS takes both)",
        "At 'mqtt.tls': must be true when ca_file, key_file are set (used only over TLS)",
    ]


def test_mistyped_values_are_reported_once_by_the_schema() -> None:
    # tls = "yes" is a type error only: no second "must be true" about the same key.
    assert problems({"tls": "yes", "ca_file": "ca.pem", "username": "", "password": "x"}) == [
        "At 'mqtt.password': unknown key",
        "At 'mqtt.tls': 'yes' is not of type 'boolean'",
        "At 'mqtt.username': '' should be non-empty",
    ]


def test_the_sample_documents_every_login_and_tls_key_and_validates_uncommented() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    section = text[text.index("[mqtt]"):text.index("[storage]")]
    for key in AUTH_KEYS:
        assert f"\n# {key} = " in section, key
    uncommented = section
    for key in AUTH_KEYS:
        uncommented = uncommented.replace(f"\n# {key} = ", f"\n{key} = ")
    uncommented = uncommented.replace("\ntls = false", "\ntls = true")  # the others need it
    data = tomllib.loads(text.replace(section, uncommented))
    config = parse_config(data, str(SAMPLE), SAMPLE.parent).mqtt
    assert config.tls is True and config.username and config.password_file
    assert config.cert_file and config.key_file and config.ca_file
    assert parse_config(tomllib.loads(text)).mqtt.tls is False  # as shipped: commented out


# -- files read when a client is made -----------------------------------------------------------
def test_the_password_comes_from_its_file_without_the_final_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret pass\n")
    client = _client(mqtt_config(tmp_path, username="receiver", password_file="pw"),
                     Subscriber(cast(Ingestor, None), "nengtan/v1/+/batch"))
    assert (client.username, client.password) == ("receiver", "s3cret pass")


@pytest.mark.parametrize("content, expected", [
    (None, "cannot read {path}: No such file or directory"),
    ("\n  \n", "{path} is empty"),
    (b"\xff\xfe", "{path} is not UTF-8 text"),
])
def test_a_password_file_that_cannot_be_used_stops_the_service_naming_the_key(
        tmp_path: Path, content: str | bytes | None, expected: str) -> None:
    path = tmp_path / "pw"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    config = mqtt_config(tmp_path, username="receiver", password_file="pw")
    assert client_error(config) == [f"At 'mqtt.password_file': {expected.format(path=path)}"]


def test_retire_reads_the_password_file_the_same_way_before_connecting(tmp_path: Path) -> None:
    config = mqtt_config(tmp_path, username="receiver", password_file="missing")
    with pytest.raises(ConfigError) as caught:
        session_present(config, clean=False)
    assert caught.value.problems[0].startswith("At 'mqtt.password_file': cannot read ")


def test_tls_verifies_the_broker_and_refuses_anything_older_than_1_2(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    mine = pki.issue("receiver", "nengtan-receiver", server=False)
    client = _client(mqtt_config(tmp_path, tls=True, ca_file=str(pki.ca_file),
                                 cert_file=str(mine.cert), key_file=str(mine.key)),
                     Subscriber(cast(Ingestor, None), "nengtan/v1/+/batch"))
    context = client._ssl_context
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_tls_files_that_cannot_be_used_are_config_errors_naming_the_key(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    mine, other = (pki.issue("receiver", "r", server=False), pki.issue("other", "o", server=False))
    base = {"tls": True, "ca_file": str(pki.ca_file), "cert_file": str(mine.cert),
            "key_file": str(mine.key)}
    cases = {
        "ca_file": {**base, "ca_file": "nowhere.pem"},  # FileNotFoundError from OpenSSL
        "key_file": {**base, "key_file": "nowhere.key"},  # the certificate is there, its key not
        "cert_file": {**base, "key_file": str(other.key)},  # ssl.SSLError: key values mismatch
    }
    found = {key: client_error(mqtt_config(tmp_path, **mqtt)) for key, mqtt in cases.items()}
    for key, [problem] in found.items():
        assert problem.startswith(f"At 'mqtt.{key}': cannot use "), problem
    assert "mismatch" in found["cert_file"][0].lower()


def test_a_failed_connection_is_logged_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    subscriber = Subscriber(cast(Ingestor, None), "nengtan/v1/+/batch")
    with caplog.at_level(logging.WARNING, logger="cloud_receiver.service"):
        try:  # paho calls on_connect_fail from its `except OSError`
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            subscriber.on_connect_fail(cast(Any, None), None)
        subscriber.on_connect_fail(cast(Any, None), None)  # outside one: no cause to give
    assert [r.getMessage() for r in caplog.records] == [
        "cannot reach the broker ([Errno 111] Connection refused); retrying",
        "cannot reach the broker; retrying"]


def test_every_mqtt_key_has_a_row_in_the_docs_config_table() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "receiver.md").read_text(encoding="utf-8")
    table = [line for line in docs.splitlines() if line.startswith("| `mqtt.")]
    for key in SCHEMA["properties"]["mqtt"]["properties"]:
        assert any(f"`mqtt.{key}`" in row for row in table), key
