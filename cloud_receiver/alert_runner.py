"""The receiver's own alert evaluation: the plant's alert rules every ``[alerts] interval_s``.

Without it the rules run only when someone calls ``nengtan receiver alerts check``. The runner
lives on a daemon thread with a store connection of its own, so the ingest thread's connection
and its transactions are never shared. An evaluation that fails (the database is down) is logged
and tried again at the next interval; it never stops ingest.

The plant files (plant.toml, replacements.toml, alerts.toml) are read again when they change. A
broken edit is logged with the file and its problems, and the last good model and rules stay in
use: an operator's typo must not silence the alerts. At start there is nothing to fall back on,
so a broken plant is a ConfigError and the service does not start.

Several receivers (a shared subscription) each run the rules. On PostgreSQL each evaluation is
one transaction holding an advisory lock, so the receivers take turns and each one sees what the
one before it raised and closed; without that, two evaluations at different instants could
close and refresh the same alert at once. SQLite needs no lock: each raise is a check-then-insert
under BEGIN IMMEDIATE, and a SQLite file serves the receivers of one host only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cloud_receiver.accounting.alerts import ALERTS_FILE, Evaluation, Rule, evaluate, load_rules
from cloud_receiver.accounting.model import PLANT_FILE, REPLACEMENTS_FILE, Plant, load_plant
from cloud_receiver.config import ReceiverConfig
from cloud_receiver.store import PG_SCHEMES, Store, open_store
from nengtan.errors import ConfigError, NengtanError

log = logging.getLogger(__name__)

#: The ``Store.transaction`` lock of an evaluation. Gateway ids are one topic level and hold no
#: "/", so no gateway's ingest lock can have this name.
EVALUATION_LOCK = "accounting/alerts"
WATCHED = (PLANT_FILE, REPLACEMENTS_FILE, ALERTS_FILE)
STOP_TIMEOUT_S = 30.0

_Signature = tuple[tuple[int, int, int] | None, ...]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _signature(directory: Path) -> _Signature:
    """What tells a changed file: mtime, size and inode (a file replaced by rename)."""
    found: list[tuple[int, int, int] | None] = []
    for name in WATCHED:
        try:
            st = (directory / name).stat()
        except OSError:  # absent (the last two are optional); loading says what is wrong
            found.append(None)
        else:
            found.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(found)


def evaluate_exclusive(store: Store, plant: Plant, rules: Sequence[Rule], now_ms: int, *,
                       lock: bool) -> Evaluation:
    """``evaluate``; with ``lock`` (PostgreSQL only: SQLite transactions do not nest), in one
    transaction that no other evaluation runs beside."""
    if not lock:
        return evaluate(store, plant, rules, now_ms)
    # The statements of the store's own methods join this transaction: PgStore lends its one
    # connection to the thread that holds it (a reentrant lock).
    with store.transaction(lock=EVALUATION_LOCK):
        return evaluate(store, plant, rules, now_ms)


class AlertRunner:
    """Evaluates the alert rules of ``plant_dir`` every ``interval_s`` on a thread of its own."""

    def __init__(self, storage: Path | str, plant_dir: Path, *, interval_s: float,
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._storage, self._dir, self._interval_s = storage, plant_dir, interval_s
        self._clock_ms = clock_ms
        self._lock = isinstance(storage, str) and storage.startswith(PG_SCHEMES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._model: tuple[Plant, list[Rule]] | None = None
        self._seen: _Signature = ()

    @property
    def plant(self) -> Plant | None:
        """The plant model in use (the last one that loaded)."""
        return None if self._model is None else self._model[0]

    def start(self) -> None:
        """Load the plant and its rules, open a store connection and start the thread. Raise
        ConfigError if the plant directory is missing or its files are wrong, StoreError if
        the store cannot be opened."""
        if not self._dir.is_dir():
            raise ConfigError("[alerts]", [f"At 'alerts.plant': the plant directory {self._dir}"
                                           " does not exist"],
                              hint="Create it with plant.toml and alerts.toml, or fix the path.")
        self._seen = _signature(self._dir)
        plant = load_plant(self._dir)
        self._model = plant, load_rules(plant)
        store = open_store(self._storage, create=False)
        self._thread = threading.Thread(target=self._loop, args=(store,), name="alert-runner",
                                        daemon=True)
        self._thread.start()
        log.info("alerts: %d rule(s) from %s, evaluated every %g s", len(self._model[1]),
                 self._dir, self._interval_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop after the evaluation under way, if any; wait for it up to ``timeout_s``."""
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # a daemon: it cannot keep the process alive
            log.warning("alerts: an evaluation is still running after %g s; not waiting for it",
                        timeout_s)

    def _loop(self, store: Store) -> None:
        try:
            # Not at once: a receiver that was down is first handed what the broker queued,
            # and until then every gateway would look offline.
            while not self._stop.wait(self._interval_s):
                self._reload_if_changed()
                self._evaluate(store)
        finally:
            try:
                store.close()
            except Exception as exc:  # at shutdown a failed close is only worth a line
                log.warning("alerts: closing the store connection: %s", exc)

    def _reload_if_changed(self) -> None:
        seen = _signature(self._dir)
        if seen == self._seen:
            return
        # Taken before reading, so an edit made while we read is picked up next time; a
        # broken file is reported once per change, not at every interval.
        self._seen = seen
        try:
            plant = load_plant(self._dir)
            rules = load_rules(plant)
        except ConfigError as exc:
            log.error("alerts: %s\nalerts: still using the plant model and rules loaded "
                      "before; fix the file and it is read again", exc)
            return
        self._model = plant, rules
        log.info("alerts: reloaded %s: %d rule(s)", self._dir, len(rules))

    def _evaluate(self, store: Store) -> None:
        assert self._model is not None  # start() loaded it
        plant, rules = self._model
        try:
            result = evaluate_exclusive(store, plant, rules, self._clock_ms(), lock=self._lock)
        except NengtanError as exc:  # StoreError: the database is down or busy
            log.error("alerts: evaluation failed; trying again in %g s: %s",
                      self._interval_s, exc)
            return
        except Exception:  # a bug must not end the thread: alerts would stop silently
            log.exception("alerts: evaluation failed; trying again in %g s", self._interval_s)
            return
        for a in result.raised:
            if a.occurrences == 1:  # new: refreshed ones were logged when they were raised
                log.warning("alert #%d raised: %s %s (rule %s): %s", a.id, a.kind, a.subject,
                            a.rule, a.detail)
        for a in result.closed:
            log.info("alert #%d closed: %s %s (rule %s): its condition cleared", a.id, a.kind,
                     a.subject, a.rule)


def start_alert_runner(config: ReceiverConfig) -> AlertRunner | None:
    """The runner of ``config.alerts``, started; None without an ``[alerts]`` section."""
    if config.alerts is None:
        return None
    runner = AlertRunner(config.storage, config.alerts.plant_dir,
                         interval_s=config.alerts.interval_s)
    runner.start()
    return runner
