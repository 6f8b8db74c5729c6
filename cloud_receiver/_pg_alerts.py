"""Accounting alerts on PostgreSQL: the ``Store`` methods ``PgStore`` inherits, and their table.

Kept beside ``_pg_store.py`` rather than in it so the accounting alerts can evolve without
touching the ingest path; ``PgStore`` supplies the connection (``_using``) and reads (``_read``).
Semantics are those of the SQLite backend (``_sqlite_store.py``): one live alert per (kind,
subject, rule), enforced by a partial unique index; acknowledgement keeps the first ack.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from cloud_receiver.store import AccountingAlert
from nengtan.errors import StoreError

#: Appended to ``_pg_schema.MIGRATIONS`` (its number there may differ from SQLite's 5).
MIGRATION = """
    CREATE TABLE accounting_alerts (
        id            bigserial PRIMARY KEY,
        kind          text COLLATE "C" NOT NULL,
        subject       text COLLATE "C" NOT NULL,
        rule          text COLLATE "C" NOT NULL,
        first_seen_ms bigint NOT NULL,
        last_seen_ms  bigint NOT NULL,
        detail        text NOT NULL,
        state         text NOT NULL CHECK (state IN ('open', 'acknowledged', 'closed')),
        occurrences   bigint NOT NULL,
        acked_by      text,
        acked_ms      bigint,
        closed_ms     bigint
    );
    CREATE UNIQUE INDEX accounting_alerts_live ON accounting_alerts (kind, subject, rule)
        WHERE state <> 'closed';
    CREATE INDEX accounting_alerts_by_state ON accounting_alerts (state, id);
"""

_COLUMNS = ("kind, subject, rule, first_seen_ms, last_seen_ms, detail, state, occurrences,"
            " acked_by, acked_ms, closed_ms, id")


def _clean(value: str) -> str:
    return value.replace("\x00", "\\x00")  # text cannot hold NUL


def _one(conn: psycopg.Connection[Any], where: str, *args: object) -> AccountingAlert | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM accounting_alerts WHERE {where}", args).fetchone()
    return None if row is None else AccountingAlert(*row)


class PgAccountingAlerts:
    """Mixin for ``PgStore``, which provides these two."""

    _using: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _read: Callable[..., list[tuple[Any, ...]]]

    def raise_accounting_alert(self, kind: str, subject: str, rule: str, at_ms: int,
                               detail: str) -> AccountingAlert:
        with self._using() as conn:
            # One statement: two receivers raising the same new condition at once end with
            # one live alert seen twice, not a unique-index violation.
            row = conn.execute(
                "INSERT INTO accounting_alerts AS a (kind, subject, rule, first_seen_ms,"
                " last_seen_ms, detail, state, occurrences)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'open', 1)"
                " ON CONFLICT (kind, subject, rule) WHERE state <> 'closed' DO UPDATE SET"
                " last_seen_ms = GREATEST(a.last_seen_ms, excluded.last_seen_ms),"
                " detail = excluded.detail, occurrences = a.occurrences + 1"
                f" RETURNING {_COLUMNS}",
                (kind, subject, rule, at_ms, at_ms, _clean(detail))).fetchone()
            assert row is not None
            return AccountingAlert(*row)

    def close_accounting_alert(self, id: int, at_ms: int) -> bool:
        with self._using() as conn:
            cursor = conn.execute("UPDATE accounting_alerts SET state = 'closed', closed_ms = %s"
                                  " WHERE id = %s AND state <> 'closed'", (at_ms, id))
            return cursor.rowcount == 1

    def ack_accounting_alert(self, id: int, by: str, at_ms: int) -> AccountingAlert:
        with self._using() as conn, conn.transaction():
            found = _one(conn, "id = %s FOR UPDATE", id)
            if found is None:
                raise StoreError(f"there is no accounting alert #{id}")
            if found.state == "closed":
                raise StoreError(f"accounting alert #{id} is closed (its condition cleared); "
                                 "nothing to acknowledge")
            if found.state == "open":
                conn.execute("UPDATE accounting_alerts SET state = 'acknowledged', acked_by = %s,"
                             " acked_ms = %s WHERE id = %s", (_clean(by), at_ms, id))
                found = _one(conn, "id = %s", id)
            assert found is not None
            return found

    def accounting_alerts(self, *, state: str | None = None, kind: str | None = None,
                          limit: int = 100) -> list[AccountingAlert]:
        where, args = ["true"], []
        if state == "live":
            where.append("state <> 'closed'")
        elif state is not None:
            where.append("state = %s")
            args.append(state)
        if kind is not None:
            where.append("kind = %s")
            args.append(kind)
        rows = self._read(f"SELECT {_COLUMNS} FROM accounting_alerts WHERE {' AND '.join(where)}"
                          " ORDER BY id DESC LIMIT %s", *args, limit)
        return [AccountingAlert(*row) for row in rows]

    def gateway_last_seen(self) -> dict[str, int]:
        rows = self._read("SELECT gateway, MAX(received_ms) FROM envelopes GROUP BY gateway"
                          " ORDER BY gateway")
        return {str(g): int(ms) for g, ms in rows}
