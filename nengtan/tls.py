"""The TLS context both the agent's uplink and the receiver hand to paho for the broker.

TLS 1.2 or newer, and the broker's certificate chain and host name are always verified: there is
no parameter to turn that off. Built here rather than by paho's ``tls_set`` so that the minimum
version is ours, not whatever the system OpenSSL configuration allows.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFileError(OSError):
    """A CA, certificate or key file could not be used; ``key`` is the config key naming it
    (``ca_file``, ``cert_file`` or ``key_file``), so each caller can point at its own config."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class _ClosingSSLSocket(ssl.SSLSocket):
    """paho leaves the socket of a failed TLS handshake to the garbage collector (one open file
    per attempt until then); this one closes itself instead."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def broker_tls_context(ca_file: Path | None, cert_file: Path | None = None,
                       key_file: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` (None: the system's CAs) and, for mutual TLS,
    presents ``cert_file`` with ``key_file``. Reads those files now; a TlsFileError (an OSError)
    names the file that could not be used."""
    ca = str(ca_file) if ca_file else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except OSError as exc:
        raise TlsFileError(f"cannot use ca_file {ca}: {exc}", key="ca_file") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.sslsocket_class = _ClosingSSLSocket
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        except OSError as exc:
            # OpenSSL does not say which of the two it could not open; a missing key file next
            # to a present certificate is the one case where we can.
            key = ("key_file" if key_file is not None and cert_file.is_file()
                   and not key_file.is_file() else "cert_file")
            raise TlsFileError(f"cannot use cert_file {cert_file} with key_file {key_file}: "
                               f"{exc}", key=key) from exc
    return context
