"""The report's blocks and how they are written: every section is a list of
blocks (headings, paragraphs, tables, images), rendered twice, to Markdown and
to self-contained HTML, so the two never disagree; and the number formats the
sections share."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from salclass.study import stats


@dataclass
class Block:
    kind: str  # "h1", "h2", "h3", "p", "list", "table", "img"
    text: str = ""
    items: list | None = None
    header: list[str] | None = None
    path: Path | None = None


def fmt_spread(s: stats.Spread | None) -> str:
    if s is None:
        return "missing"
    return f"{s.mean:.2f} ± {s.std:.2f}" if s.n > 1 else f"{s.mean:.2f}"


def fmt_points(x: float) -> str:
    return f"{100.0 * x:+.2f}"


def fmt_interval(iv: stats.Interval | None) -> str:
    if iv is None:
        return ""
    return f"{fmt_points(iv.diff)} [{fmt_points(iv.low)}, {fmt_points(iv.high)}]"


def fmt_p(p: float) -> str:
    return "1" if p >= 0.9995 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def fmt_thesis(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def fmt_p_pair(c: stats.Comparison) -> tuple[str, str]:
    return fmt_p(c.p), ("" if c.p_adjusted is None else fmt_p(c.p_adjusted))


def fmt_count(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def fmt_metric(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def fmt_difference(v) -> str:
    if not isinstance(v, dict):
        return "-"
    return f"{v['difference']:+.3f} ({v['low']:+.3f} to {v['high']:+.3f})"


def fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], root: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            lines += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            if b.text:
                lines += [b.text, ""]
        elif b.kind == "list":
            lines += [f"- {item}" for item in b.items] + [""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            lines.append("|" + "|".join("---" for _ in b.header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.items]
            lines.append("")
        elif b.kind == "img":
            lines += [f"![{b.text}]({b.path.relative_to(root).as_posix()})", ""]
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    t = html.escape(str(text))
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def to_html(blocks: list[Block], title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{_inline_html(b.text)}</{b.kind}>")
        elif b.kind == "p":
            if b.text:
                body.append(f"<p>{_inline_html(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                           for row in b.items)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "img":
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}"></p>')
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
