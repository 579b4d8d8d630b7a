"""Charts for the dashboard and the audit report, drawn by matplotlib as SVG on the server.

matplotlib rather than Vega-Lite: the charts must show with no network (the audit PDF, an offline
browser, an e-mail), and Vega-Lite needs its JavaScript from a CDN or bundled into every page; an SVG
made here needs nothing. Each chart comes in a light and a dark rendering; the page shows the one
matching the reader's colour scheme.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

import matplotlib

matplotlib.use("Agg")

from matplotlib import dates as mdates  # noqa: E402
from matplotlib import pyplot  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

THEMES = {
    "light": {"text": "#1f2933", "grid": "#d9dee3", "line": "#1f6fb2", "fail": "#c0392b"},
    "dark": {"text": "#e4e7eb", "grid": "#3e4c59", "line": "#63b3ed", "fail": "#fc8181"},
}
CHART_CSS = (".chart-dark{display:none}@media (prefers-color-scheme: dark){.chart-light{display:none}"
             ".chart-dark{display:block}}")


def _units(values: Sequence[float], unit: str) -> tuple[float, str]:
    """A divisor and label that keep the axis numbers readable (bytes: kB, MB, GB; seconds: s, min)."""
    top = max(values, default=0)
    if unit == "bytes":
        for divisor, label in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if top >= divisor:
                return divisor, label
        return 1, "bytes"
    if unit == "seconds" and top >= 600:
        return 60, "minutes"
    return 1, unit


def _svg(points: Sequence[tuple[datetime, float]], title: str, unit: str, theme: str,
         failures: Sequence[datetime] = ()) -> str:
    colors = THEMES[theme]
    divisor, label = _units([value for _, value in points], unit)
    figure, axes = pyplot.subplots(figsize=(6.4, 2.4), dpi=96)
    try:
        figure.patch.set_alpha(0)
        axes.set_facecolor("none")
        times = [moment for moment, _ in points]
        axes.plot(times, [value / divisor for _, value in points], marker="o", markersize=3, linewidth=1.5,
                  color=colors["line"])
        for moment in failures:
            axes.axvline(moment, color=colors["fail"], linewidth=1, linestyle="--")
        axes.set_title(title, color=colors["text"], fontsize=10, loc="left")
        axes.set_ylabel(label, color=colors["text"], fontsize=9)
        axes.margins(y=0.12)
        axes.set_ylim(bottom=0)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.1f}" if value < 10 else f"{value:,.0f}"))
        locator = mdates.AutoDateLocator(maxticks=8)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        axes.grid(True, color=colors["grid"], linewidth=0.6)
        for spine in axes.spines.values():
            spine.set_color(colors["grid"])
        axes.tick_params(colors=colors["text"], labelsize=8)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", transparent=True)
    finally:
        pyplot.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def line_chart(points: Sequence[tuple[datetime, float]], title: str, unit: str,
               failures: Sequence[datetime] = (), *, themes: Sequence[str] = ("light", "dark")) -> str:
    """An SVG line chart over time with real axes (dates, the unit), one per theme; a note when there
    are fewer than two points. Failed runs show as dashed lines."""
    if len(points) < 2:
        return f"<p class='chart-empty'>{title}: not enough backups yet for a chart</p>"
    ordered = sorted(points)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.family": "DejaVu Sans"}):
        return "".join(f"<div class='chart-{theme}' role='img' aria-label='{title}'>"
                       f"{_svg(ordered, title, unit, theme, failures)}</div>" for theme in themes)
