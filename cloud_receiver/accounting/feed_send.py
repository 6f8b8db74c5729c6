"""Delivering feed messages: the adapter interface, the default HTTPS + JSON adapter, retries
with back-off, and the audit log of everything sent.

The provinces' enterprise-side protocol is not public (GB/T 37947.1/.7 schema not found,
standards.md §3.3), so delivery is an adapter: ``attempt`` makes one try and says whether a
failure is worth retrying; ``deliver`` does the retries and writes the audit for every adapter
alike. A province-specific protocol is a new adapter class, nothing else changes.

The audit log is an append-only JSON-lines file in the receiver's state directory (beside the
database), not a store table: it is evidence of what left the plant, so it must outlive a store
rebuild or a backend migration, be readable with ``grep`` by an auditor who has no receiver, and
never be rewritten; each line is flushed and fsynced before the next attempt. Every attempt is
one line; the first attempt of a delivery also holds the exact bytes sent.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported when an adapter is made: every `nengtan` command loads this module
    import httpx

from cloud_receiver.accounting.feed import FeedMessage
from nengtan.errors import ConfigError, NengtanError

FEED_FILE = "feed.toml"
AUDIT_FILE = "feed-audit.jsonl"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class FeedError(NengtanError):
    """The platform did not accept a message (after the retries, or for good)."""

    hint = "See the feed audit log (`nengtan receiver feed audit`) for every attempt."


@dataclass(frozen=True)
class FeedConfig:
    enterprise_code: str
    url: str
    interval_minutes: int = 15
    points: tuple[str, ...] = ()
    timeout_s: float = 10.0
    retries: int = 4  # attempts after the first
    backoff_s: float = 1.0  # first wait; doubled each retry
    backoff_max_s: float = 60.0
    token_env: str | None = None  # bearer token taken from this environment variable
    ca_file: str | None = None


def load_feed_config(plant_dir: Path) -> FeedConfig:
    """Read ``[feed]`` from ``feed.toml`` in the plant directory; every problem at once."""
    path = plant_dir / FEED_FILE
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["not found: the feed needs enterprise_code and url"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    raw = doc.get("feed")
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["At 'feed': a [feed] table is required"])
    types: dict[str, tuple[type, ...]] = {
        "enterprise_code": (str,), "url": (str,), "interval_minutes": (int,), "points": (list,),
        "timeout_s": (int, float), "retries": (int,), "backoff_s": (int, float),
        "backoff_max_s": (int, float), "token_env": (str,), "ca_file": (str,)}
    problems = [f"At 'feed.{k}': unknown key" for k in raw if k not in types]
    problems += [f"At 'feed.{k}': required" for k in ("enterprise_code", "url") if k not in raw]
    for key, kinds in types.items():
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            problems.append(f"At 'feed.{key}': expected {' or '.join(t.__name__ for t in kinds)}")
    url = raw.get("url")
    if isinstance(url, str) and not url.startswith(("https://", "http://")):
        problems.append("At 'feed.url': must start with https:// (http:// only for tests)")
    for key in ("timeout_s", "backoff_s", "backoff_max_s"):
        if isinstance(raw.get(key), int | float) and raw[key] < 0:
            problems.append(f"At 'feed.{key}': must not be negative")
    if isinstance(raw.get("retries"), int) and not 0 <= raw["retries"] <= 20:
        problems.append("At 'feed.retries': 0 to 20")
    if problems:
        raise ConfigError(str(path), problems, hint="docs/accounting.md describes feed.toml.")
    return FeedConfig(raw["enterprise_code"], raw["url"], raw.get("interval_minutes", 15),
                      tuple(str(p) for p in raw.get("points", [])),
                      float(raw.get("timeout_s", 10.0)), raw.get("retries", 4),
                      float(raw.get("backoff_s", 1.0)), float(raw.get("backoff_max_s", 60.0)),
                      raw.get("token_env"), raw.get("ca_file"))


@dataclass(frozen=True)
class Attempt:
    """The outcome of one try."""

    ok: bool
    retryable: bool
    status: int | None  # HTTP status, None when no response came
    detail: str  # response excerpt or the transport error
    retry_after_s: float | None = None


class FeedAdapter(Protocol):
    """One delivery channel to the platform. ``attempt`` must not retry by itself."""

    target: str  # where messages go, for the audit log

    def attempt(self, message: FeedMessage) -> Attempt: ...


class HttpsJsonAdapter:
    """POST the canonical JSON body; ``Idempotency-Key`` is the message id, so a resend of the
    same period is recognisable, and ``X-Content-SHA256`` lets the platform check the bytes."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 10.0,
                 ca_file: str | None = None, client: httpx.Client | None = None) -> None:
        self.target = url
        self._token = token
        import httpx

        # A platform on a private CA is trusted through that CA alone, not the system's too.
        verify: ssl.SSLContext | bool = True
        if ca_file:
            try:
                verify = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(FEED_FILE, [f"At 'feed.ca_file': cannot use {ca_file} as CA "
                                              f"certificates: {exc}"],
                                  hint="Give the PEM file of the CA that signed the platform's "
                                       "certificate.") from exc
        self._client = client or httpx.Client(timeout=timeout_s, verify=verify)

    def close(self) -> None:
        self._client.close()

    def attempt(self, message: FeedMessage) -> Attempt:
        import httpx

        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Idempotency-Key": message.message_id, "X-Content-SHA256": message.digest}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._client.post(self.target, content=message.payload, headers=headers)
        except httpx.HTTPError as exc:
            # Connection refused, reset, timeout, TLS failure: nothing was accepted; try again.
            return Attempt(False, True, None, f"{type(exc).__name__}: {exc}")
        detail = response.text[:500]
        if response.is_success:
            return Attempt(True, False, response.status_code, detail)
        retry_after = response.headers.get("Retry-After")
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        return Attempt(False, response.status_code in _RETRY_STATUS, response.status_code,
                       detail, wait)


class AuditLog:
    """Append-only JSON lines; see the module docstring for why it is a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # A torn last line after a crash is kept in the file and shown, not skipped.
                    yield {"outcome": "unreadable", "line": number, "text": line[:200]}

    def accepted_digest(self, message_id: str) -> str | None:
        """The digest of the last accepted delivery of ``message_id``, if any."""
        last = None
        for e in self.entries():
            if e.get("message_id") == message_id and e.get("outcome") == "accepted":
                last = e.get("digest")
        return last


@dataclass(frozen=True)
class Delivery:
    message_id: str
    period: str
    outcome: str  # accepted | already_accepted | rejected | failed
    attempts: int
    status: int | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"message_id": self.message_id, "period": self.period, "outcome": self.outcome,
                "attempts": self.attempts, "status": self.status, "detail": self.detail}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def deliver(adapter: FeedAdapter, message: FeedMessage, audit: AuditLog, *, retries: int = 4,
            backoff_s: float = 1.0, backoff_max_s: float = 60.0, resend: bool = False,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Send ``message`` with up to ``retries`` retries (waits backoff_s × 2^n, capped, or the
    server's Retry-After), auditing every attempt. A period already accepted with the same
    digest is not sent again unless ``resend``; a changed digest is a correction and is sent."""
    previous = audit.accepted_digest(message.message_id)
    if previous == message.digest and not resend:
        return Delivery(message.message_id, message.period, "already_accepted", 0, None,
                        "the platform accepted identical content before; use --resend to repeat")
    base = {"message_id": message.message_id, "kind": message.kind, "period": message.period,
            "digest": message.digest, "target": adapter.target,
            "correction_of": previous if previous not in (None, message.digest) else None}
    result = Attempt(False, True, None, "not attempted")
    attempt = 0
    for attempt in range(1, retries + 2):
        result = adapter.attempt(message)
        outcome = ("accepted" if result.ok else "retry" if result.retryable and
                   attempt <= retries else "rejected" if not result.retryable else "failed")
        entry = {**base, "at": _now(), "attempt": attempt, "outcome": outcome,
                 "status": result.status, "detail": result.detail}
        if attempt == 1:
            entry["body"] = message.payload.decode("utf-8")
        audit.append(entry)
        if outcome != "retry":
            return Delivery(message.message_id, message.period, outcome, attempt, result.status,
                            result.detail)
        wait = min(backoff_s * 2 ** (attempt - 1), backoff_max_s)
        sleep(min(result.retry_after_s, backoff_max_s) if result.retry_after_s else wait)
    return Delivery(message.message_id, message.period, "failed", attempt, result.status,
                    result.detail)
