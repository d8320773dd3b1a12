"""Rich display in Jupyter: what ``Evaluation`` and ``RunResult`` show when they are the last line of a cell
(``_repr_html_``): the headline metrics with confidence intervals, the per-class table, the confusion
matrix, the run's curves and plots inline. Plain HTML with inline styles (notebooks keep no stylesheet),
every name escaped; no dependency beyond the standard library."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

TABLE = 'style="border-collapse:collapse;font-size:13px;margin:4px 0"'
CELL = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:right"'
LEFT = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"'
MAX_CLASSES_SHOWN = 30


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pct(value) -> str:
    return f"{100 * value:.2f}%" if _is_number(value) else ""


def _num(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else ""


def headline_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(name, value, its 95% bootstrap interval or "") of a run's headline test metrics: the one list the
    notebook display and the workbench's run page both show."""
    ci = metrics.get("confidence_intervals") or {}
    macro = metrics.get("macro_avg") or {}

    def interval(key, fmt):
        bounds = ci.get(key)
        return f"95% CI {fmt(bounds[0])} – {fmt(bounds[1])}" if isinstance(bounds, (list, tuple)) and len(bounds) == 2 \
            else ""
    rows = [("accuracy", _pct(metrics.get("accuracy")), interval("accuracy", _pct)),
            ("macro F1", _num(macro.get("f1")), interval("macro_f1", _num)),
            ("balanced accuracy", _pct(metrics.get("balanced_accuracy")), ""), ("MCC", _num(metrics.get("mcc")), ""),
            *((f"top-{k} accuracy", _pct(v), "") for k, v in (metrics.get("top_k_accuracy") or {}).items() if k != "1"),
            ("test images", str(metrics.get("n", "")), "")]
    return [row for row in rows if row[1]]


def metrics_html(metrics: dict) -> str:
    """Headline metrics (with their bootstrap intervals) and the per-class table."""
    if not metrics:
        return "<p>No test metrics.</p>"
    rows = [(name, f"{value} ({ci})" if ci else value) for name, value, ci in headline_rows(metrics)]
    head = "".join(f"<tr><th {LEFT}>{escape(k)}</th><td {LEFT}>{escape(v)}</td></tr>" for k, v in rows)
    per_class = metrics.get("per_class") or []
    body = "".join(
        f"<tr><td {LEFT}>{escape(str(c.get('class')))}</td>" + "".join(
            f"<td {CELL}>{_num(c.get(k), 3)}</td>" for k in ("precision", "recall", "specificity", "f1"))
        + f"<td {CELL}>{c.get('support', '')}</td></tr>" for c in per_class[:MAX_CLASSES_SHOWN])
    more = f"<p>... and {len(per_class) - MAX_CLASSES_SHOWN} more classes</p>" if len(per_class) > MAX_CLASSES_SHOWN else ""
    table = (f"<table {TABLE}><tr><th {LEFT}>class</th><th {CELL}>precision</th><th {CELL}>recall</th>"
             f"<th {CELL}>specificity</th><th {CELL}>F1</th><th {CELL}>support</th></tr>{body}</table>{more}"
             if per_class else "")
    return f'<div style="display:flex;gap:24px;flex-wrap:wrap"><table {TABLE}>{head}</table>{table}</div>'


def confusion_html(matrix, class_names: list[str]) -> str:
    """The confusion matrix as a shaded table (rows: true class, columns: predicted)."""
    names = [str(n) for n in class_names]
    if len(names) > MAX_CLASSES_SHOWN:
        return f"<p>Confusion matrix: {len(names)} classes (see confusion_matrix.png).</p>"
    head = "".join(f'<th style="padding:2px 4px;font-size:11px">{escape(n[:10])}</th>' for n in names)
    rows = []
    for t, row in enumerate(matrix):
        total = sum(row) or 1
        cells = []
        for p, count in enumerate(row):
            share = count / total
            colour = f"rgba(36,87,197,{0.15 + 0.6 * share:.2f})" if t == p else f"rgba(217,72,15,{0.7 * share:.2f})"
            cells.append(f'<td style="padding:2px 6px;text-align:center;background:{colour if count else "none"}">'
                         f'{int(count) if count else ""}</td>')
        rows.append(f'<tr><th style="padding:2px 6px;text-align:right;font-size:11px">{escape(names[t][:14])}</th>'
                    + "".join(cells) + "</tr>")
    return (f'<table {TABLE}><caption style="font-size:12px">rows: true class, columns: predicted</caption>'
            f"<tr><th></th>{head}</tr>{''.join(rows)}</table>")


def image_html(path: Path, title: str = "", width: int = 480) -> str:
    """A PNG of the run embedded inline (the notebook keeps it when the run folder moves)."""
    if not path.is_file() or path.stat().st_size > 8 << 20:
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure style="display:inline-block;margin:4px"><img src="data:image/png;base64,{data}" '
            f'style="max-width:{width}px" alt="{escape(title)}"><figcaption style="font-size:12px">{escape(title)}'
            "</figcaption></figure>")


def run_html(result) -> str:
    """A RunResult: what it is, its metrics, confusion matrix, curves and the command's own plots."""
    run_dir = Path(result.run_dir)
    parts = [f"<h4 style=\"margin:4px 0\">classlab {escape(result.command)} · {escape(run_dir.name)}</h4>"]
    metrics = result.metrics or {}
    if metrics:
        parts.append(metrics_html(metrics))
        evaluation = result.evaluation  # a run just made holds its Evaluation; one read back, the saved numbers
        matrix = evaluation.confusion_matrix.tolist() if evaluation is not None else metrics.get("confusion_matrix")
        names = evaluation.class_names if evaluation is not None else metrics.get("class_names")
        if matrix and names:
            parts.append(confusion_html(matrix, names))
    details = result.details or {}
    for pair in details.get("pairs", []) if isinstance(details.get("pairs"), list) else []:
        for key in ("verdict_accuracy", "verdict_macro_f1"):
            if pair.get(key):
                parts.append(f"<p>{escape(pair[key])}</p>")
    shown = ["curves.png", "comparison.png", "accuracy_vs_k.png", "samples.png", "class_distribution.png",
             "explain/top_losses.png", "explain/reliability.png", "near_duplicates.png"]
    parts += [image_html(run_dir / name, name) for name in shown]
    if result.report is not None:
        parts.append(f"<p style=\"font-size:12px\">Full report: <code>{escape(str(result.report))}</code></p>")
    return "<div>" + "".join(p for p in parts if p) + "</div>"


def run_repr(result) -> str:
    """One line: the command, the folder and the headline numbers."""
    numbers = ""
    if result.accuracy is not None:
        numbers = f", accuracy {result.accuracy:.4f}"
        if result.macro_f1 is not None:
            numbers += f", macro F1 {result.macro_f1:.4f}"
    return f"RunResult({result.command}, {result.run_dir}{numbers})"
