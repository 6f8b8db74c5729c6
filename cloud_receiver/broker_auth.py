"""Broker login and TLS for every paho client the receiver makes (``run`` and ``retire``).

The files ``[mqtt]`` names (password_file, ca_file, cert_file, key_file) are read here, when a
client is made, which is when the service starts: validation does no I/O. A file that cannot be
used is a ConfigError naming its key, so the service refuses to start (exit 2) rather than
retry a connection that cannot succeed. TLS is the agent's (``nengtan.tls``): 1.2 or newer,
the broker's chain and host name always verified.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt

from cloud_receiver.config import MqttConfig
from nengtan.errors import ConfigError
from nengtan.tls import TlsFileError, broker_tls_context

HINT = ("Check the file the key names: it must exist and be readable by the receiver's user "
        "(docs/receiver.md, \"TLS and authentication\").")


def _problem(key: str, message: str) -> ConfigError:
    return ConfigError("[mqtt]", [f"At 'mqtt.{key}': {message}"], hint=HINT)


def _password(config: MqttConfig) -> str | None:
    path = config.password_file
    if path is None:
        return None
    try:
        # Surrounding whitespace, the file's final newline above all, is not part of it.
        password = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise _problem("password_file", f"{path} is not UTF-8 text") from exc
    except OSError as exc:
        raise _problem("password_file", f"cannot read {path}: {exc.strerror or exc}") from exc
    if not password:
        raise _problem("password_file", f"{path} is empty")
    return password


def secure(client: mqtt.Client, config: MqttConfig) -> None:
    """Give ``client`` the user name, password and TLS context ``config`` asks for; raise
    ConfigError naming the key whose file cannot be used."""
    if config.username is not None:
        client.username_pw_set(config.username, _password(config))
    if config.tls:
        try:
            context = broker_tls_context(config.ca_file, config.cert_file, config.key_file)
        except TlsFileError as exc:
            raise _problem(exc.key, str(exc)) from exc
        client.tls_set_context(context)
