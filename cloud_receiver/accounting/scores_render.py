"""A ``ScoreSheet`` as text, JSON, CSV or a printable HTML page, and as the tables the annual
report appends. Each item shows its inputs with where they came from, the working and the
points; the 附表2 tables follow. All formats come from the same rows (``item_rows``)."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from cloud_receiver.accounting.schemes import fmt
from cloud_receiver.accounting.scores import ItemScore, ScoreSheet

FORMATS = ("text", "json", "csv", "html")
ITEM_HEADER = ["scheme", "item", "label", "points", "max_points", "inputs", "working",
               "rule_source", "status"]
Cell = str | float | int | None
AppendixTable = tuple[str, list[str], list[list[Cell]]]


def _inputs_text(item: ItemScore) -> str:
    return "; ".join(f"{i.name} = {'—' if i.value is None else fmt(i.value)} [{i.origin}: "
                     f"{i.provenance}]" for i in item.inputs)


def item_rows(sheet: ScoreSheet, scheme: str | None = None) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for i in sheet.of(scheme):
        s = i.score
        rows.append([i.scheme, i.item, i.label, "" if s is None else fmt(s.points),
                     "" if s is None else fmt(s.max_points), _inputs_text(i),
                     i.note if s is None else s.working, "" if s is None else s.source,
                     "" if s is None else s.status])
    return rows


def appendix(sheet: ScoreSheet) -> list[AppendixTable]:
    """The item scores and both 附表2 tables, shaped like the report's own tables."""
    title = f"Scheme scores {sheet.year} (rules {sheet.rules_version})"
    out: list[AppendixTable] = [(title, ITEM_HEADER, item_rows(sheet))]
    out += [(t.title, list(t.columns), [list(r) for r in t.rows]) for t in sheet.tables()]
    return out


def render_json(sheet: ScoreSheet, scheme: str | None = None) -> str:
    return json.dumps(sheet.as_dict(scheme), ensure_ascii=False, indent=2)


def render_text(sheet: ScoreSheet, scheme: str | None = None) -> str:
    lines = [f"Scheme scores {sheet.year}  rules {sheet.rules_version} ({sheet.rules_origin})",
             f"entered inputs: {sheet.inputs_file}"
             + ("" if Path(sheet.inputs_file).is_file() else " (not there: nothing entered)")]
    lines += [f"warning: {w}" for w in sheet.warnings]
    for i in sheet.of(scheme):
        s = i.score
        head = "not computable" if s is None else f"{fmt(s.points)} / {fmt(s.max_points)} points"
        lines += ["", f"{i.scheme}.{i.item}  {i.label}: {head}"]
        for x in i.inputs:
            value = "—" if x.value is None else fmt(x.value)
            lines.append(f"  {x.name} = {value}  [{x.origin}] {x.provenance}")
        if s is None:
            lines.append(f"  {i.note}")
        else:
            lines.append(f"  formula: {s.working}")
            lines.append(f"  rule: {s.source} (status {s.status})")
    for t in sheet.tables(scheme):
        lines += ["", t.title, "  " + " | ".join(t.columns)]
        lines += ["  " + " | ".join(row) for row in t.rows]
    return "\n".join(lines)


def render_csv(sheet: ScoreSheet, scheme: str | None = None) -> str:
    """One file: the item rows, then each 附表2 table after a ``# title`` line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([f"# Scheme scores {sheet.year}", f"rules {sheet.rules_version}"])
    for warning in sheet.warnings:
        w.writerow(["# warning", warning])
    w.writerow(ITEM_HEADER)
    w.writerows(item_rows(sheet, scheme))
    for t in sheet.tables(scheme):
        w.writerow([])
        w.writerow([f"# {t.title}"])
        w.writerow(t.columns)
        w.writerows(t.rows)
    return buf.getvalue()


def render_html(sheet: ScoreSheet, scheme: str | None = None) -> str:
    """A self-contained printable page (no scripts, no external files)."""
    e = html.escape
    css = ("body{font-family:sans-serif;font-size:10pt;margin:1.5cm}table{border-collapse:"
           "collapse;margin:0 0 1em;width:100%}th,td{border:1px solid #999;padding:2px 4px;"
           "text-align:left;vertical-align:top}@media print{tr{break-inside:avoid}"
           "@page{size:A4 landscape;margin:1cm}}")
    title = f"Scheme scores {sheet.year}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{css}</style></head><body><h1>{e(title)}</h1>",
             f"<p>Rules {e(sheet.rules_version)} ({e(sheet.rules_origin)}); entered inputs "
             f"{e(sheet.inputs_file)}</p>"]
    parts += [f"<p><strong>warning:</strong> {e(w)}</p>" for w in sheet.warnings]
    parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in ITEM_HEADER) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>"
              for row in item_rows(sheet, scheme)]
    parts.append("</table>")
    parts += [t.as_html() for t in sheet.tables(scheme)]
    parts.append("</body></html>")
    return "\n".join(parts)


def render(sheet: ScoreSheet, fmt_name: str, scheme: str | None = None) -> str:
    return {"text": render_text, "json": render_json, "csv": render_csv,
            "html": render_html}[fmt_name](sheet, scheme)
