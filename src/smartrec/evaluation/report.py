"""Self-contained HTML report of an offline evaluation: a results table and inline SVG charts.

One file with no scripts, stylesheets, fonts or images from anywhere else, so that it can be
attached to a CI run, mailed or opened offline, and cannot leak or run anything: every piece of
text taken from the result is escaped. Charts are drawn here rather than with a plotting
library to keep the package free of one.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Okabe-Ito: distinguishable with the common colour-vision deficiencies (yellow last: faint).
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
#: Line styles on top of colours, so that series stay apart in greyscale too.
DASHES: tuple[str, ...] = ("", "6 3", "2 3", "8 3 2 3")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
max-width:1180px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#555;margin:2px 0}.note{color:#777;font-style:italic}
table{border-collapse:collapse;margin-top:8px}
th,td{padding:4px 10px;text-align:right;border-bottom:1px solid #eee}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
td.best{background:#dbeaf7;font-weight:700}
.charts{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #e4e4e4;border-radius:6px;padding:6px 8px}
figcaption{font-weight:600;font-size:13px;text-align:center}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None for anything missing, non-numeric or NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _fmt(value: Any, digits: int = 4) -> str:
    v = _num(value)
    return "n/a" if v is None else f"{v:.{digits}f}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 x 10^e)."""
    span = hi - lo if hi > lo else abs(hi) or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, max(last, first + 1) + 1)]


def _tick_label(v: float) -> str:
    return f"{v:.3g}"


def _figure(title: str, body: str, width: int, height: int) -> str:
    return (
        f'<figure><svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="system-ui, sans-serif" font-size="11" role="img" '
        f'aria-label="{_e(title)}"><title>{_e(title)}</title>{body}</svg>'
        f"<figcaption>{_e(title)}</figcaption></figure>"
    )


def _style(i: int) -> tuple[str, str]:
    return PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    x_label: str,
    y_label: str,
    *,
    baseline: tuple[float, str] | None = None,
    styles: Mapping[str, int] | None = None,
) -> str:
    """One SVG: a line per series with hoverable points, y from 0, legend on the right."""
    w, h, left, right, top, bottom = 480, 270, 56, 150, 14, 46
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + ([baseline[0]] if baseline else [])
    x_lo, x_hi = min(xs), max(xs)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_ticks = _ticks(min(0.0, *ys), max(ys))
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    pw, ph = w - left - right, h - top - bottom

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def py(y: float) -> float:
        return top + ph - (y - y_lo) / (y_hi - y_lo) * ph

    parts: list[str] = []
    for t in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            f'stroke="#e6e6e6"/><text x="{left - 6}" y="{py(t) + 4:.1f}" '
            f'text-anchor="end">{_tick_label(t)}</text>'
        )
    for x in sorted(set(xs)):
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
            f'stroke="#555"/><text x="{px(x):.1f}" y="{top + ph + 16}" '
            f'text-anchor="middle">{_tick_label(x)}</text>'
        )
    parts.append(
        f'<path d="M{left} {top}V{top + ph}H{left + pw}" fill="none" stroke="#555"/>'
        f'<text x="{left + pw / 2:.1f}" y="{h - 8}" text-anchor="middle">{_e(x_label)}</text>'
        f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{_e(y_label)}</text>'
    )
    if baseline is not None:
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(baseline[0]):.1f}" '
            f'y2="{py(baseline[0]):.1f}" stroke="#888" stroke-dasharray="3 3">'
            f"<title>{_e(baseline[1])}</title></line>"
        )
    for i, (name, pts) in enumerate(series):
        colour, dash = _style(styles.get(name, i) if styles else i)
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/>'
        )
        for x, y in pts:
            parts.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                f"<title>{_e(name)}: {_e(x_label)} {_tick_label(x)} = {y:.4f}</title></circle>"
            )
        ly = top + 8 + i * 18
        lx = left + pw + 12
        parts.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{ly}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/><text x="{lx + 28}" y="{ly + 4}">'
            f"<title>{_e(name)}</title>{_e(_short(name, 15))}</text>"
        )
    if baseline is not None:
        ly = top + 8 + len(series) * 18
        parts.append(
            f'<line x1="{left + pw + 12}" x2="{left + pw + 34}" y1="{ly}" y2="{ly}" '
            f'stroke="#888" stroke-dasharray="3 3"/>'
            f'<text x="{left + pw + 40}" y="{ly + 4}">{_e(_short(baseline[1], 15))}</text>'
        )
    return _figure(title, "".join(parts), w, h)


def bar_chart(title: str, bars: Sequence[tuple[str, float, str]], x_label: str) -> str:
    """One SVG: horizontal bars (label, value, colour), room for long labels, value at the end."""
    w, left, right, top, bottom, row = 480, 144, 58, 10, 40, 24
    h = top + row * len(bars) + bottom
    x_ticks = _ticks(min(0.0, *(v for _, v, _ in bars)), max(0.0, *(v for _, v, _ in bars)))
    lo, hi = x_ticks[0], x_ticks[-1]
    pw = w - left - right

    def px(x: float) -> float:
        return left + (x - lo) / (hi - lo) * pw

    base = top + row * len(bars)
    parts = [
        f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{base}" stroke="#e6e6e6"/>'
        f'<text x="{px(t):.1f}" y="{base + 15}" text-anchor="middle">{_tick_label(t)}</text>'
        for t in x_ticks
    ]
    for i, (label, value, colour) in enumerate(bars):
        y = top + i * row + 4
        x0, x1 = sorted((px(0.0), px(value)))
        parts.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end"><title>{_e(label)}</title>'
            f"{_e(_short(label, 22))}</text>"
            f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.5):.1f}" height="{row - 8}" '
            f'fill="{colour}"><title>{_e(label)}: {value:.4f}</title></rect>'
            f'<text x="{x1 + 4:.1f}" y="{y + 12}">{value:.3f}</text>'
        )
    parts.append(
        f'<path d="M{left} {top}V{base}H{left + pw}" fill="none" stroke="#555"/>'
        f'<text x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle">{_e(x_label)}</text>'
    )
    return _figure(title, "".join(parts), w, h)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _charts(items: Iterable[str]) -> str:
    return '<div class="charts">' + "".join(items) + "</div>"


def _header(result: Mapping[str, Any], k: int) -> str:
    dataset = result.get("dataset", "offline evaluation")
    facts = [
        ("data", result.get("source")),
        (
            "split",
            f"{result['n_train']:,} train / {result['n_test']:,} test ratings"
            if _num(result.get("n_train")) is not None and _num(result.get("n_test")) is not None
            else None,
        ),
        (
            "catalogue",
            f"{result.get('n_users')} users x {result.get('n_items')} items"
            if "n_users" in result and "n_items" in result
            else None,
        ),
        ("seed", result.get("seed")),
        ("train confidence", result.get("weighting")),
        ("headline cutoff", f"top-{k}"),
    ]
    lines = "".join(
        f'<p class="meta"><b>{_e(name)}:</b> {_e(value)}</p>'
        for name, value in facts
        if value is not None
    )
    protocol = result.get("protocol")
    proto = f'<p class="meta"><b>protocol:</b> {_e(protocol)}</p>' if protocol else ""
    return f"<h1>Offline evaluation: {_e(dataset)}</h1>{lines}{proto}"


def _table(rows: Sequence[Mapping[str, Any]], k: int, refs: Mapping[str, Any]) -> str:
    """Results table; the best value of each column (by its own direction) is highlighted."""
    spec = [
        (f"ndcg@{k}", f"nDCG@{k} ↑", "max", 4),
        ("map", "MAP ↑", "max", 4),
        (f"precision@{k}", f"P@{k} ↑", "max", 4),
        (f"recall@{k}", f"R@{k} ↑", "max", 4),
        ("coverage", "coverage ↑", "max", 4),
        (f"ild@{k}", f"ILD@{k} ↑", "max", 4),
        (f"novelty@{k}", f"novelty@{k} ↑", "max", 3),
        (f"arp@{k}", f"ARP@{k} ↓", "min", 1),
        ("train_seconds", "train s ↓", "min", 2),
        ("predict_seconds", "predict s ↓", "min", 2),
    ]
    cols = [c for c in spec if any(c[0] in r for r in rows)]
    best: dict[str, float] = {}
    for key, _, direction, _ in cols:
        values = [v for r in rows if (v := _num(r.get(key))) is not None]
        if len(values) >= 2:
            best[key] = max(values) if direction == "max" else min(values)
    show_ref = any(str(r.get("model")) in refs for r in rows)
    head = "<th>model</th>" + "".join(f"<th>{_e(c[1])}</th>" for c in cols)
    head += "<th>ref nDCG@10</th>" if show_ref else ""
    body = []
    for r in rows:
        cells = [f"<td>{_e(r.get('model', '?'))}</td>"]
        for key, _, _, digits in cols:
            v = _num(r.get(key))
            mark = ' class="best"' if v is not None and best.get(key) == v else ""
            cells.append(f"<td{mark}>{_fmt(v, digits)}</td>")
        if show_ref:
            cells.append(f"<td>{_fmt(refs.get(str(r.get('model'))), 3)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    legend = _note("↑ higher is better, ↓ lower is better; the best of each column is shaded.")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{legend}"


def _curve_points(curve: Any) -> list[tuple[float, float]]:
    """``{K: value}`` (int keys, or str keys after a JSON round trip) as sorted points."""
    if not isinstance(curve, Mapping):
        return []
    pts = []
    for key, value in curve.items():
        try:
            x = float(key)
        except (TypeError, ValueError):
            continue
        if (y := _num(value)) is not None:
            pts.append((x, y))
    return sorted(pts)


def _curves_section(rows: Sequence[Mapping[str, Any]], styles: Mapping[str, int]) -> str:
    figs, notes = [], []
    for metric, label in (("ndcg", "nDCG@K"), ("precision", "Precision@K"), ("recall", "Recall@K")):
        series = [
            (str(r.get("model")), pts)
            for r in rows
            if (pts := _curve_points((r.get("curves") or {}).get(metric)))
        ]
        if series:
            figs.append(line_chart(label, series, "K", label, styles=styles))
        else:
            notes.append(_note(f"No {label} curve in this result."))
    return _charts(figs) + "".join(notes)


def _bars_section(rows: Sequence[Mapping[str, Any]], k: int, styles: Mapping[str, int]) -> str:
    figs, notes = [], []
    metrics = (
        (f"ndcg@{k}", f"nDCG@{k}"),
        ("coverage", "Catalogue coverage"),
        (f"ild@{k}", f"Intra-list diversity@{k} (genres)"),
        (f"novelty@{k}", f"Novelty@{k} (bits)"),
    )
    for key, label in metrics:
        bars = [
            (str(r.get("model")), v, _style(styles.get(str(r.get("model")), 0))[0])
            for r in rows
            if (v := _num(r.get(key))) is not None
        ]
        if bars:
            figs.append(bar_chart(label, bars, label))
        else:
            notes.append(_note(f"No {label} in this result."))
    return _charts(figs) + "".join(notes)


def _bias_section(rows: Sequence[Mapping[str, Any]], styles: Mapping[str, int]) -> str:
    series = []
    for r in rows:
        shares = r.get("popularity_bias")
        if isinstance(shares, Sequence) and shares and all(_num(s) is not None for s in shares):
            series.append(
                (str(r.get("model")), [(i + 1.0, float(s)) for i, s in enumerate(shares)])
            )
    if not series:
        return _note("No popularity-bias profile in this result.")
    bins = max(len(pts) for _, pts in series)
    chart = line_chart(
        "Share of recommendations per item-popularity decile",
        series,
        "train-popularity decile (1 = most popular items)",
        "share of recommendations",
        baseline=(1.0 / bins, "uniform"),
        styles=styles,
    )
    return _charts([chart])


def _ablation_section(result: Mapping[str, Any], k: int) -> str:
    ablation = result.get("ablation")
    if not isinstance(ablation, Sequence) or isinstance(ablation, str) or not ablation:
        return _note("No ablation in this result.")
    key = next(
        (
            c
            for c in (f"ndcg@{k}", "ndcg@10")
            if any(c in a for a in ablation if isinstance(a, Mapping))
        ),
        f"ndcg@{k}",
    )
    bars = [
        (str(a.get("stage", "?")), v, PALETTE[0])
        for a in ablation
        if isinstance(a, Mapping) and (v := _num(a.get(key))) is not None
    ]
    if not bars:
        return _note(f"The ablation has no {key} values.")
    label = key.replace("ndcg", "nDCG")
    return _charts([bar_chart(f"Ablation: {label} per stage", bars, label)])


def render_report(result: Mapping[str, Any]) -> str:
    """The HTML document for a :func:`run_stratified_movielens`-shaped result."""
    rows = [r for r in result.get("rows", []) if isinstance(r, Mapping)]
    k = int(result.get("k", 10))
    styles = {str(r.get("model")): i for i, r in enumerate(rows)}
    refs = result.get("reference_ndcg") or {}
    title = f"smartrec evaluation: {result.get('dataset', 'offline evaluation')}"
    sections = [
        _header(result, k),
        "<h2>Results</h2>",
        _table(rows, k, refs) if rows else _note("No model rows in this result."),
        "<h2>Accuracy at K</h2>",
        _curves_section(rows, styles),
        "<h2>Per model</h2>",
        _bars_section(rows, k, styles),
        "<h2>Popularity bias</h2>",
        _bias_section(rows, styles),
        "<h2>Ablation</h2>",
        _ablation_section(result, k),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def write_report(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write the self-contained HTML report of ``result`` to ``path`` and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(result), encoding="utf-8")
    return out
