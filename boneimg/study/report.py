"""``report.html``: one self-contained page (inline SVG plots and CSS, no scripts, nothing
fetched) with the effects table, a plot per measurement and links to the QC overlays."""

from html import escape
import io
import json
import math

import numpy as np

from ..io.atomic import atomic_path
from ..io.write import provenance

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td.text { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .plots figure { margin: 0; }
.note { color: #666; } pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; }
"""

_ANIMAL_COLUMNS = ("group", "animal", "timepoint", "n_images", "n_bones")  # the rest are measurements


def write_report(study, *, source):
    """Write ``report.html`` for a :class:`~boneimg.study.runner.Study` into its folder."""
    meta = provenance(source, study.settings, control=study.control)
    n_animals = len(study.animals)
    parts = [
        f"<h1>boneimg study report</h1><p>{len(study.images)} images analysed, "
        f"{len(study.failures)} failed; {n_animals} animal(s); control group "
        f"<b>{escape(study.control)}</b>. Design: {escape(str(source))}. {escape(meta['software'])}, "
        f"{escape(meta['created'])}.</p>",
        "<p class='note'>The animal is the unit of replication: images are averaged per bone and "
        "bones per animal before groups are compared. Differences are group mean minus control "
        "mean, in the measurement's unit; p adj. is Holm-adjusted over the groups compared with "
        "the control.</p>",
        "<h2>Effects versus control</h2>", _effects_table(study.effects),
        "<h2>Measurements per animal</h2>", _plots(study),
        "<h2>Failed images</h2>", _failures_table(study.failures),
        "<h2>QC overlays</h2>", _qc_table(study.images),
        "<h2>Settings</h2>", f"<pre>{escape(json.dumps(study.settings, indent=1))}</pre>",
    ]
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>boneimg study report"
            f"</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    with atomic_path(study.report) as tmp:
        tmp.write_text(page, encoding="utf-8")


def _fmt(value):
    if isinstance(value, str):
        return value
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _interval(value, low, high, unit=""):
    return f"{_fmt(value)}{unit} [{_fmt(low)}, {_fmt(high)}]"


def _html_table(header, rows, text_columns=()):
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='text'>{cell}</td>" if i in text_columns else f"<td>{cell}</td>"
                         for i, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _effects_table(effects):
    if effects.empty:
        return "<p class='note'>No effects: the study needs a control group and at least one other group.</p>"
    timed = "timepoint" in effects
    header = (["timepoint"] if timed else []) + [
        "measurement", "group", "n", "mean ± SD", "median", "control n", "control mean ± SD",
        "difference [CI]", "% change [CI]", "test", "p", "p adj."]
    rows = []
    for r in effects.itertuples(index=False):
        rows.append(([escape(str(r.timepoint))] if timed else []) + [
            escape(r.measurement), escape(r.group), str(r.n), f"{_fmt(r.mean)} ± {_fmt(r.sd)}",
            _fmt(r.median), str(r.n_control), f"{_fmt(r.mean_control)} ± {_fmt(r.sd_control)}",
            _interval(r.difference, r.difference_ci_low, r.difference_ci_high),
            _interval(r.percent_change_pct, r.percent_change_ci_low_pct, r.percent_change_ci_high_pct, " %"),
            escape(r.test), _fmt(r.p_value), _fmt(r.p_adjusted)])
    text = {header.index(c) for c in ("measurement", "group", "test")} | ({0} if timed else set())
    ci = "; ".join(effects["ci_method"].drop_duplicates())
    return _html_table(header, rows, text) + (
        f"<p class='note'>CI: {escape(ci)}. With fewer than about 10 animals per group bootstrap "
        "intervals are narrower than their nominal level (in simulations of boneimg's synthetic "
        "studies with 5-8 animals per group, 95 % intervals covered the true change 86-93 % of the "
        "time); read them with the p-values.</p>")


def _failures_table(failures):
    if failures.empty:
        return "<p class='note'>None.</p>"
    rows = [[escape(str(r.group)), escape(str(r.animal)), escape(str(r.path)), escape(str(r.reason))]
            for r in failures.itertuples(index=False)]
    return _html_table(["group", "animal", "image", "reason"], rows, {0, 1, 2, 3})


def _qc_table(images):
    if images.empty:
        return "<p class='note'>None.</p>"
    rows = []
    for r in images.itertuples(index=False):
        name = escape(str(r.path).replace("\\", "/").rsplit("/", 1)[-1])
        overlay = r.qc_overlay if isinstance(r.qc_overlay, str) else ""  # "" (read back: NaN) if not drawn
        link = f"<a href='{escape(overlay)}'>{name}</a>" if overlay else name
        rows.append([escape(str(r.group)), escape(str(r.animal)), link, escape(str(r.warnings or ""))])
    return (_html_table(["group", "animal", "image (QC overlay)", "warnings"], rows, {0, 1, 2, 3})
            + "<p class='note'>Overlays live in the qc/ folder next to this report.</p>")


def _plots(study):
    measurements = [c for c in study.animals.columns if c not in _ANIMAL_COLUMNS]
    if not measurements:
        return "<p class='note'>No numeric measurements to plot.</p>"
    figures = [_plot(study.animals, study.effects, m, study.control) for m in measurements]
    return "<div class='plots'>" + "".join(f"<figure>{svg}</figure>" for svg in figures) + "</div>"


def _plot(animals, effects, measurement, control):
    """Points per animal over a box per group (and timepoint); adjusted p above each arm."""
    import matplotlib
    from matplotlib.figure import Figure

    timed = "timepoint" in animals
    keys = ["timepoint", "group"] if timed else ["group"]
    groups = list(dict.fromkeys([control, *animals["group"]]))
    order = animals[keys].drop_duplicates()
    order = order.assign(_g=order["group"].map(groups.index)).sort_values(
        (["timepoint"] if timed else []) + ["_g"], kind="stable")
    categories = [tuple(k) for k in order[keys].itertuples(index=False)]
    values = [animals.loc[(animals[keys] == list(c)).all(axis=1), measurement].dropna().to_numpy()
              for c in categories]
    labels = [" ".join(map(str, c)) for c in categories]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "boneimg", "font.size": 8}):
        fig = Figure(figsize=(1.2 + 0.75 * len(categories), 2.8))
        ax = fig.add_subplot()
        present = [i for i, v in enumerate(values) if len(v)]
        ax.boxplot([values[i] for i in present], positions=present, widths=0.55, showfliers=False,
                   medianprops={"color": "black"})
        for i in present:
            jitter = np.linspace(-0.15, 0.15, len(values[i])) if len(values[i]) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), values[i], s=14, zorder=3, color="tab:blue", alpha=0.8)
        p_of = {(getattr(r, "timepoint", None), r.group): r.p_adjusted
                for r in effects[effects["measurement"] == measurement].itertuples(index=False)}
        for i, c in enumerate(categories):
            p = p_of.get((c[0], c[1]) if timed else (None, c[0]))
            if p is not None and math.isfinite(p):
                ax.annotate(f"p adj. {p:.2g}", (i, 1.0), xycoords=("data", "axes fraction"),
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(categories)), labels=labels, rotation=30 if len(categories) > 3 else 0,
                      ha="right" if len(categories) > 3 else "center")
        ax.set_xlim(-0.6, len(categories) - 0.4)
        ax.set_ylabel(measurement)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]
