"""Render an accounting ``Report`` as text, JSON, CSV, XLSX or printable HTML.

Every format carries the same evidence: the factor (value, unit, key, status, table version,
source) each column was multiplied by, completeness, gaps and counter events, and per point the
stored readings that reconcile its amount. The tables come from one function (``tables``) so
the formats cannot drift apart.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence

from cloud_receiver.accounting.report import Report, local_text

DECIMALS = 6  # machine formats; text shows 3 and says so
Cell = str | float | int | None
Table = tuple[str, list[str], list[list[Cell]]]  # (title, header, rows)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, DECIMALS)


def tables(report: Report) -> list[Table]:
    tz = report.timezone
    nodes: list[list[Cell]] = [
        [n.node, n.name, n.kind, n.depth, n.energy_type, n.unit, _r(n.amount), _r(n.kgce),
              _r(n.kgco2), " + ".join(n.points)] for n in report.nodes]
    points: list[list[Cell]] = [[p.id, p.name, p.node, p.level, p.energy_type, p.use, p.unit, _r(p.amount),
               _r(p.kgce), _r(p.kgco2), round(p.completeness, 4), round(p.gap_hours, 4)]
              for p in report.points]
    readings: list[list[Cell]] = [[p.id, first.series, local_text(first.ts_ms, tz), first.value,
                 local_text(last.ts_ms, tz), last.value, _r(last.value - first.value),
                 _r(p.adjustment), p.scale, _r(p.reconciled)]
                for p in report.points for first, last in p.readings]
    factors: list[list[Cell]] = [
        [etype, c.unit, c.kgce.value, c.kgce.unit, c.kgce.key, c.kgce.status,
                c.kgce.table_version, c.co2.value if c.co2 else None,
                c.co2.unit if c.co2 else None, c.co2.key if c.co2 else c.co2_note,
                c.co2.status if c.co2 else None, c.co2.table_version if c.co2 else None,
                c.kgce.source + (" | " + c.co2.source if c.co2 else "")]
               for etype, c in sorted(report.conversions.items())]
    gaps: list[list[Cell]] = [
        [g.point, local_text(g.start_ms, tz), local_text(g.end_ms, tz), round(g.hours, 4),
             g.empty, g.long] for g in report.gaps]
    events: list[list[Cell]] = [
        [e.point, e.kind, local_text(e.ts_ms, tz), e.previous, e.current, _r(e.amount),
               _r(e.adjustment), e.detail] for e in report.events]
    out: list[Table] = [
        ("Totals by node and energy type",
         ["node", "name", "kind", "depth", "energy_type", "unit", "amount", "kgce", "kgco2",
          "points"], nodes),
        ("Metering points",
         ["point", "name", "node", "level", "energy_type", "use", "unit", "amount", "kgce",
          "kgco2", "completeness_pct", "gap_hours"], points),
        ("Stored readings (reconciliation)",
         ["point", "series", "first_at", "first_value", "last_at", "last_value", "difference",
          "event_adjustment", "scale", "reconciled_amount"], readings),
        ("Factors",
         ["energy_type", "unit", "kgce_per_unit", "kgce_unit", "kgce_key", "kgce_status",
          "kgce_table", "co2_per_unit", "co2_unit", "co2_key", "co2_status", "co2_table",
          "sources"], factors),
        ("Gaps (never filled)",
         ["point", "from", "to", "hours", "empty_buckets", "long_interval_buckets"], gaps),
        ("Counter events", ["point", "kind", "at", "previous", "current", "amount",
                            "adjustment", "detail"], events),
    ]
    if report.months:
        out.insert(1, ("Enterprise by month", ["month", "energy_type", "amount", "kgce",
                                               "kgco2"],
                       [[m, e, _r(a), _r(k), _r(c)] for m, e, a, k, c in report.months]))
    return out + report.appendix


def _head(report: Report) -> list[tuple[str, str]]:
    ch = report.choice
    return [("report", report.title), ("period", report.label),
            ("from", local_text(report.start_ms, report.timezone)),
            ("to (exclusive)", local_text(report.end_ms, report.timezone)),
            ("timezone", report.timezone),
            ("regime", f"{ch.regime} / {ch.region} / {ch.year}"),
            ("electricity basis", ch.electricity_basis),
            ("total kgce", f"{report.total_kgce:.6f}"),
            ("total kgCO2", f"{report.total_kgco2:.6f}"),
            ("lowest point completeness %", f"{report.completeness:.4f}")]


def as_dict(report: Report) -> dict[str, object]:
    return {"head": dict(_head(report)),
            "tables": [{"title": t, "header": h, "rows": rows} for t, h, rows in tables(report)]}


def render_json(report: Report) -> str:
    return json.dumps(as_dict(report), ensure_ascii=False, indent=2)


def render_csv(report: Report) -> str:
    """One CSV file: head lines, then each table after a ``# title`` line and its header."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for k, v in _head(report):
        w.writerow([f"# {k}", v])
    for title, header, rows in tables(report):
        w.writerow([])
        w.writerow([f"# {title}"])
        w.writerow(header)
        w.writerows(rows)
    return buf.getvalue()


def render_text(report: Report) -> str:
    lines = [f"{k:<28} {v}" for k, v in _head(report)]
    lines.append("")
    lines.append("Totals (a node counts its top-most metering points only; amounts to 3 decimals)")
    for n in report.nodes:
        co2 = "—" if n.kgco2 is None else f"{n.kgco2:,.3f}"
        lines.append(f"{'  ' * n.depth}{n.node:<{24 - 2 * n.depth}} {n.energy_type:<12} "
                     f"{n.amount:>14,.3f} {n.unit:<4} {n.kgce:>14,.3f} kgce {co2:>14} kgCO2"
                     f"   [{' + '.join(n.points)}]")
    if report.months:
        lines += ["", "Enterprise by month"]
        lines += [f"  {m} {e:<12} {a:>14,.3f} {k:>14,.3f} kgce "
                  f"{'—' if c is None else f'{c:,.3f}':>14} kgCO2" for m, e, a, k, c in report.months]
    lines += ["", "Factors (kgce = amount × coefficient; kgCO2 = amount × CO2 factor)"]
    for etype, c in sorted(report.conversions.items()):
        lines.append(f"  {etype}: {c.kgce.value} {c.kgce.unit} [{c.kgce.key}, {c.kgce.status}, "
                     f"{c.kgce.table_version}]")
        lines.append(f"      source: {c.kgce.source}")
        if c.co2 is None:
            lines.append(f"      CO2: none — {c.co2_note}")
        else:
            lines.append(f"      CO2: {c.co2.value} {c.co2.unit} [{c.co2.key}, {c.co2.status}, "
                         f"{c.co2.table_version}]")
            lines.append(f"      source: {c.co2.source}")
    lines += ["", "Metering points: amount = (last − first stored reading + event adjustments)"
              " × scale"]
    for p in report.points:
        lines.append(f"  {p.id} (level {p.level}, {p.energy_type}, {p.use}): {p.amount:,.3f} "
                     f"{p.unit}; completeness {p.completeness:.4f} %; gaps {p.gap_hours:g} h")
        for first, last in p.readings:
            lines.append(f"      {first.series}: {first.value} @ "
                         f"{local_text(first.ts_ms, report.timezone)} → {last.value} @ "
                         f"{local_text(last.ts_ms, report.timezone)}")
        lines.append(f"      ({' + '.join(f'({b.value} − {a.value})' for a, b in p.readings) or '0'}"
                     f" + {p.adjustment:g}) × {p.scale:g} = {p.reconciled:,.6f}")
    lines += ["", f"Gaps (never filled; their energy is booked where the next reading lands): "
              f"{len(report.gaps)}"]
    lines += [f"  {g.point}: {local_text(g.start_ms, report.timezone)} → "
              f"{local_text(g.end_ms, report.timezone)} ({g.hours:g} h, {g.empty} empty and "
              f"{g.long} long-interval quarter-hours)" for g in report.gaps]
    lines += ["", f"Counter events: {len(report.events)}"]
    lines += [f"  {e.point} {e.kind} at {local_text(e.ts_ms, report.timezone)}: {e.previous} → "
              f"{e.current}, adds {e.amount:g} ({e.detail})" for e in report.events]
    for title, header, rows in report.appendix:
        lines += ["", title, "  " + " | ".join(header)]
        lines += ["  " + " | ".join("—" if c is None else str(c) for c in row) for row in rows]
    return "\n".join(lines)


def render_html(report: Report) -> str:
    """A self-contained printable page (no scripts, no external files); print to PDF from a
    browser."""
    e = html.escape
    css = ("body{font-family:sans-serif;font-size:10pt;margin:1.5cm}table{border-collapse:collapse;"
           "margin:0 0 1em;width:100%}th,td{border:1px solid #999;padding:2px 4px;text-align:left}"
           "td.n{text-align:right;font-variant-numeric:tabular-nums}h2{font-size:12pt;margin-top:"
           "1.2em}@media print{h2{break-after:avoid}tr{break-inside:avoid}@page{size:A4 landscape;"
           "margin:1cm}}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>"
             f"<style>{css}</style></head><body><h1>{e(report.title)}</h1><table>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _head(report)]
    parts.append("</table>")
    for title, header, rows in tables(report):
        parts.append(f"<h2>{e(title)}</h2><table><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows]
        if not rows:
            parts.append(f"<tr><td colspan='{len(header)}'>none</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _td(c: Cell) -> str:
    if c is None:
        return "<td>—</td>"
    if isinstance(c, (int, float)):
        return f"<td class='n'>{c}</td>"
    return f"<td>{html.escape(c)}</td>"


def render_xlsx(report: Report) -> bytes:
    """One worksheet per table, plus a ``Report`` sheet with the head."""
    from openpyxl import Workbook

    wb = Workbook()
    head = wb.active
    assert head is not None
    head.title = "Report"
    for k, v in _head(report):
        head.append([k, v])
    for title, header, rows in tables(report):
        ws = wb.create_sheet(_sheet_name(title, wb.sheetnames))
        ws.append(header)
        for row in rows:
            ws.append(list(row))
        ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _sheet_name(title: str, taken: Sequence[str]) -> str:
    name = title.split(" (")[0][:31]  # Excel's limit
    return name if name not in taken else f"{name[:28]}_{len(taken)}"
