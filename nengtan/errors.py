"""The exception tree shared by every Nengtan package.

    NengtanError                 anything we raise on purpose; the CLI maps it to an exit code
    ├── ConfigError              a config file is wrong; carries every problem with its path
    ├── IdentityError            a key or enrollment file is missing, unreadable or unsafe
    ├── MeterError               one meter did not give a usable answer (unit_id, address)
    │   ├── MeterTimeout         silence: nothing, or not a whole frame, before the timeout
    │   └── MeterProtocolError   an answer that is not what we asked for (exception code, bad frame)
    ├── StoreError               the local SQLite store cannot be used
    ├── ForwardError             the uplink cannot deliver right now (the loop retries)
    └── EnvelopeError            an envelope failed verification; ``reason`` is a stable code

Library errors (pymodbus, pyserial, paho, sqlite3) are converted into these at the adapter that
calls the library, with ``raise ... from exc`` so the cause is kept for the log.
"""

from __future__ import annotations

from collections.abc import Sequence


class NengtanError(Exception):
    """Base of every error Nengtan raises on purpose."""

    #: A short "how to fix it" line the CLI prints under the message.
    hint: str = ""


class ConfigError(NengtanError):
    """A config file failed validation; ``problems`` lists each one as ``At 'path': message``."""

    hint = "Fix the listed keys; `nengtan provision config sample` prints a commented example."

    def __init__(self, source: str, problems: Sequence[str], *, hint: str | None = None) -> None:
        if hint is not None:
            self.hint = hint
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class IdentityError(NengtanError):
    """A gateway identity (key pair) or an enrollment record cannot be used."""

    hint = "Create the identity with `nengtan provision init`, or pass --replace to renew it."


class MeterError(NengtanError):
    """A meter did not give a usable answer."""

    def __init__(self, message: str, *, unit_id: int, address: int | None = None) -> None:
        self.unit_id = unit_id
        self.address = address
        super().__init__(message)


class MeterTimeout(MeterError):
    """The meter stayed silent (or sent half a frame) until the timeout ran out."""


class MeterProtocolError(MeterError):
    """The meter answered with a Modbus exception or a frame we cannot use."""

    def __init__(
        self, message: str, *, unit_id: int, address: int | None = None, code: int | None = None
    ) -> None:
        self.code = code
        super().__init__(message, unit_id=unit_id, address=address)


class StoreError(NengtanError):
    """The local store cannot be opened or written."""

    hint = "Check the state directory's free space and permissions (see `nengtan agent status`)."


class ForwardError(NengtanError):
    """The uplink cannot deliver now; the agent loop keeps buffering and retries later."""


class EnvelopeError(NengtanError):
    """An envelope failed verification; ``reason`` is one of the stable codes in the wire docs."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
