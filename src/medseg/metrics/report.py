"""Markdown and HTML reports of an evaluation, with box plots of the per-case values (matplotlib, Agg)."""

from __future__ import annotations

import html
import math

import numpy as np

from medseg.fileutil import atomic_path, write_text_atomic

#: Metrics shown in the tables and plots of the report (all are in per_case.csv and summary.json).
REPORT_METRICS = ("dice", "iou", "precision", "recall", "hd95", "assd", "nsd", "volume_diff", "roc_auc", "pr_auc")
PLOT_METRICS = ("dice", "hd95", "assd", "nsd", "roc_auc", "pr_auc")
UNITS = {"hd95": "mm", "assd": "mm", "hausdorff": "mm"}


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf"
    return f"{value:.4g}"


def _table(summary) -> list[list[str]]:
    rows = [["label", "metric", "mean ± std", "median", "95% CI", "n finite / inf / nan"]]
    for label in summary.labels:
        for metric in REPORT_METRICS:
            if metric not in summary.metrics:
                continue
            s = summary.statistics[label][metric]
            unit = f" {UNITS[metric]}" if metric in UNITS else ""
            rows.append([
                label, metric + unit, f"{_fmt(s['mean'])} ± {_fmt(s['std'])}", _fmt(s["median"]),
                f"[{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]", f"{s['n_finite']} / {s['n_inf']} / {s['n_nan']}",
            ])
    return rows


def _plot(summary, path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window (works headless and in worker processes)
    import matplotlib.pyplot as plt

    metrics = [m for m in PLOT_METRICS if m in summary.metrics]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
    labels = list(summary.labels)
    for ax, metric in zip(axes[0], metrics):
        data = []
        for label in labels:
            values = np.array([r[metric] for r in summary.per_case if r["label"] == label], dtype=float)
            data.append(values[np.isfinite(values)])
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric + (f" ({UNITS[metric]})" if metric in UNITS else ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_reports(summary, settings: dict) -> None:
    """Write ``boxplots.png``, ``report.md`` and ``report.html`` into ``summary.out_dir``."""
    from medseg.provenance import provenance

    out = summary.out_dir
    _plot(summary, out / "boxplots.png")
    counts = summary.counts
    made = provenance()
    made_by = (f"medseg {made['medseg']}, Python {made['python']}, "
               + ", ".join(f"{k} {v}" for k, v in made["packages"].items())
               + f"; {made['machine']['hostname']} ({made['machine']['architecture']}, {made['machine']['cpu_count']} CPUs); "
               + made["date"])
    lines = [
        "# Evaluation report", "",
        f"- predictions: `{settings['pred_dir']}`", f"- ground truth: `{settings['gt_dir']}`",
        f"- roi: `{settings['roi_dir']}`" if settings["roi_dir"] else "- roi: none",
        f"- NSD tolerance: {settings['nsd_tolerance_mm']} mm",
        f"- distances in: {settings.get('length_unit', 'mm')}"
        + (" (raster files carry no physical spacing: pixels, not millimetres)"
           if settings.get("length_unit") == "px" else ""),
        f"- cases: {counts['cases']}; missing predictions (scored as failures): "
        f"{len(counts['missing_predictions'])} {counts['missing_predictions'][:20] or ''}",
        f"- predictions without ground truth (ignored): {len(counts['predictions_without_ground_truth'])} "
        f"{counts['predictions_without_ground_truth'][:20] or ''}",
        f"- made with: {made_by}",
        "", "## Empty masks", "",
        "| label | reference empty | prediction empty | both empty | exactly one empty |", "|---|---|---|---|---|",
    ]
    for label, c in counts["per_label"].items():
        lines.append(f"| {label} | {c['reference_empty']} | {c['prediction_empty']} | {c['both_empty']} | "
                     f"{c['exactly_one_empty']} |")
    table = _table(summary)
    lines += ["", "## Metrics", "", "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    lines += [
        "", "Statistics are over finite values; inf (a distance with one empty mask) and nan (undefined) "
        "are counted. HD95 = max of the directed 95th percentiles; ASSD pooled; volumes in mL (3D) or mm² (2D).",
        "", "![box plots](boxplots.png)", "",
    ]
    write_text_atomic(out / "report.md", "\n".join(lines))

    def row(cells, tag="td"):
        return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"

    empty_rows = [row(["label", "reference empty", "prediction empty", "both empty", "exactly one empty"], "th")]
    empty_rows += [row([l, str(c["reference_empty"]), str(c["prediction_empty"]), str(c["both_empty"]),
                        str(c["exactly_one_empty"])]) for l, c in counts["per_label"].items()]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>medseg evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Evaluation report</h1>
<p>Predictions <code>{html.escape(settings['pred_dir'])}</code> vs ground truth <code>{html.escape(settings['gt_dir'])}</code>;
{counts['cases']} cases; missing predictions (scored as failures): {len(counts['missing_predictions'])}
{html.escape(', '.join(counts['missing_predictions'][:20]))}; NSD tolerance {settings['nsd_tolerance_mm']} mm.</p>
<p>Made with {html.escape(made_by)}.</p>
<h2>Empty masks</h2><table>{''.join(empty_rows)}</table>
<h2>Metrics</h2><table>{row(table[0], 'th')}{''.join(row(r) for r in table[1:])}</table>
<p>Statistics over finite values; inf and nan counted. HD95 = max of the directed 95th percentiles.</p>
<img src="boxplots.png" alt="box plots">
</body></html>
"""
    write_text_atomic(out / "report.html", page)
