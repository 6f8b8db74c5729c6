"""Which cycles the receiver is missing, per gateway and epoch, and why.

A range is ``declared`` when the gateway's signed gap records cover it (it dropped those cycles
itself, e.g. at its disk cap) and ``missing`` otherwise: lost between gateway and receiver, or
still on the way. The ranges run from cycle 1 up to the higher of the highest stored cycle and
the highest ``last`` a signed checkpoint claims, so a tail the gateway sealed but never delivered
is listed too. The computation is ``Store.missing_ranges``; this module gathers and prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cloud_receiver.store import Alert, MissingRange, Store, StreamSummary

ALERT_LIMIT = 20


@dataclass(frozen=True)
class StreamGaps:
    stream: StreamSummary
    ranges: tuple[MissingRange, ...]

    @property
    def missing(self) -> int:
        return sum(r.cycles for r in self.ranges if r.status == "missing")

    @property
    def declared(self) -> int:
        return sum(r.cycles for r in self.ranges if r.status == "declared")


@dataclass(frozen=True)
class GapReport:
    streams: tuple[StreamGaps, ...]
    alerts: tuple[Alert, ...]  # newest first, at most ALERT_LIMIT

    def as_dict(self) -> dict[str, object]:
        return {
            "streams": [{
                "gateway": g.stream.gateway, "epoch": g.stream.epoch,
                "envelopes": g.stream.envelopes, "stored_last": g.stream.stored_last,
                "checkpoint": {"last": g.stream.checkpoint_last,
                               "sealed": g.stream.checkpoint_sealed,
                               "received_ms": g.stream.checkpoint_received_ms,
                               "count": g.stream.checkpoints,
                               "conflicts": g.stream.conflicts},
                "missing_cycles": g.missing, "declared_cycles": g.declared,
                "ranges": [{"first": r.first, "last": r.last, "cycles": r.cycles,
                            "status": r.status, "reason": r.reason} for r in g.ranges],
            } for g in self.streams],
            "alerts": [{"id": a.id, "received_ms": a.received_ms, "kind": a.kind,
                        "gateway": a.gateway, "epoch": a.epoch, "detail": a.detail}
                       for a in self.alerts],
        }


def build_gap_report(store: Store, gateway: str | None = None) -> GapReport:
    streams = tuple(StreamGaps(s, tuple(store.missing_ranges(s.gateway, s.epoch)))
                    for s in store.streams(gateway))
    alerts = tuple(a for a in store.alerts(limit=ALERT_LIMIT)
                   if gateway is None or a.gateway == gateway)
    return GapReport(streams, alerts)


def _when(ms: int | None) -> str:
    return "never" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def render_gaps(report: GapReport) -> str:
    lines: list[str] = []
    for g in report.streams:
        s = g.stream
        lines.append(f"{s.gateway} epoch {s.epoch}: {s.envelopes} envelope(s) up to cycle "
                     f"{s.stored_last}; latest checkpoint: cycle {s.checkpoint_last}, "
                     f"{s.checkpoint_sealed} sealed (received {_when(s.checkpoint_received_ms)})")
        for r in g.ranges:
            what = f"declared by the gateway: {r.reason}" if r.status == "declared" else "missing"
            lines.append(f"  {r.first}..{r.last} ({r.cycles} cycle(s)) {what}")
        if not g.ranges:
            lines.append("  complete: no cycle is missing")
        if s.conflicts:
            lines.append(f"  SECURITY: {s.conflicts} checkpoint(s) disagree with the stored "
                         "envelopes")
    if not report.streams:
        lines.append("(nothing stored for this selection)")
    if report.alerts:
        lines += ["", "Security alerts (newest first):"]
        lines += [f"  #{a.id} {_when(a.received_ms)} {a.kind}: {a.detail}" for a in report.alerts]
    return "\n".join(lines)
