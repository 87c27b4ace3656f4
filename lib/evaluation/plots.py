"""PNG figures for the evaluation report (matplotlib's Agg canvas; no display, no global backend switch).

Every writer creates the parent folder if needed and returns the path it wrote, as a string.
Curves come in as ``{name: (x, y)}``, e.g. from ``liftlake.lib.uplift_metrics.uplift_curve``.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping, Sequence, TypeVar

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from liftlake.lib.evaluation.cvr_metrics import as_1d_float, check_same_length
from liftlake.lib.evaluation.truth_metrics import CalibrationBins

__all__ = ["plot_uplift_curves", "plot_qini_curves", "plot_calibration_bins",
           "plot_cumulative_slope", "plot_label_rate_sweep"]

Curves = Mapping[str, tuple[Any, Any]]
Draw = TypeVar("Draw", bound=Callable[..., str])


def _matplotlib_defaults(draw: Draw) -> Draw:
    """Draw (and save) under matplotlib's own defaults: a library imported beside the report changes
    the global style at import (CausalML sets fivethirtyeight: 40 % larger text, so the titles and axis
    labels no longer fit the figure), and the report's figures must not depend on what was imported."""
    defaults: Any = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}  # rc keys

    @functools.wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> str:
        with matplotlib.rc_context(defaults):
            return draw(*args, **kwargs)
    return drawn  # type: ignore[return-value]


def _new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike[str]) -> str:
    target = os.fspath(path)
    parent = os.path.dirname(target)
    if parent:
        os.makedirs(parent, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, format="png")
    return target


def _checked_curves(curves: Curves) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if not curves:
        raise ValueError("curves: nothing to plot")
    checked = []
    for name, (x, y) in curves.items():
        xs, ys = as_1d_float(f"{name} x", x), as_1d_float(f"{name} y", y)
        check_same_length(**{f"{name} x": xs, f"{name} y": ys})
        checked.append((str(name), xs, ys))
    return checked


def _finish(axes, path: str | os.PathLike[str], xlabel: str, ylabel: str, title: str) -> str:
    """Labels, grid and legend of a one-panel figure, then the PNG."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return _save(axes.figure, path)


def _gain_plot(curves: Curves, path: str | os.PathLike[str], title: str, ylabel: str) -> str:
    figure = _new_figure()
    axes = figure.add_subplot(1, 1, 1)
    for index, (name, xs, ys) in enumerate(_checked_curves(curves)):
        line, = axes.plot(xs, ys, label=name, linewidth=1.6)
        # Each curve's random-targeting baseline: the chord from its first to its last point.
        axes.plot([xs[0], xs[-1]], [ys[0], ys[-1]], linestyle="--", linewidth=0.9,
                  color=line.get_color(), label="random" if index == 0 else None)
    return _finish(axes, path, "number of users targeted", ylabel, title)


@_matplotlib_defaults
def plot_uplift_curves(curves: Curves, path: str | os.PathLike[str], title: str = "Uplift curve") -> str:
    """Uplift curves (with each one's random baseline, dashed) into one PNG."""
    return _gain_plot(curves, path, title, "uplift x number targeted")


@_matplotlib_defaults
def plot_qini_curves(curves: Curves, path: str | os.PathLike[str], title: str = "Qini curve") -> str:
    """Qini curves (with each one's random baseline, dashed) into one PNG."""
    return _gain_plot(curves, path, title, "incremental responders")


SHARES = np.linspace(0.0, 1.0, 101)


def gain_on_shares(x: Any, y: Any) -> np.ndarray:
    """A gain curve (k users targeted, total gain) as gain per user of the population at the shares
    0, 0.01, ..., 1 targeted (linear between its points), so curves of different worlds average."""
    xs, ys = as_1d_float("x", x), as_1d_float("y", y)
    check_same_length(x=xs, y=ys)
    if len(xs) < 2 or xs[-1] <= 0:
        raise ValueError("gain curve: needs points up to a positive number of users")
    return np.interp(SHARES * xs[-1], xs, ys) / xs[-1]


@_matplotlib_defaults
def plot_gain_band(per_seed: Mapping[str, Sequence[np.ndarray]], path: str | os.PathLike[str], title: str,
                   ylabel: str) -> str:
    """Mean gain curve over the seeds with the band of their min..max, per row of ``per_seed`` (name ->
    one ``gain_on_shares`` array per seed; an "oracle" and a "random" row are drawn as references)."""
    if not per_seed:
        raise ValueError("curves: nothing to plot")
    figure = _new_figure()
    axes = figure.add_subplot(1, 1, 1)
    styles = {"oracle": ("black", ":"), "random": ("grey", "--")}
    for name, curves in per_seed.items():
        stack = np.vstack([as_1d_float(f"{name} curve", c) for c in curves])
        if stack.shape[1] != SHARES.size:
            raise ValueError(f"{name}: a curve has {stack.shape[1]} points, not {SHARES.size} (gain_on_shares)")
        label = f"{name} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"
        color, dash = styles.get(name, (None, "-"))
        line, = axes.plot(SHARES, stack.mean(axis=0), label=label, linewidth=1.6, color=color, linestyle=dash)
        if len(curves) > 1:
            axes.fill_between(SHARES, stack.min(axis=0), stack.max(axis=0), color=line.get_color(), alpha=0.15,
                              linewidth=0)
    return _finish(axes, path, "share of users targeted, highest predicted effect first", ylabel, title)


@_matplotlib_defaults
def plot_calibration_bins(
    bins: CalibrationBins,
    path: str | os.PathLike[str],
    title: str = "Calibration (equal-width bins)",
    target: str = "true CVR",
) -> str:
    """Reliability diagram of ``truth_metrics.ece``'s equal-width bins, i.e. exactly what its ECE sums
    over: per filled bin the mean ``target`` against the mean prediction, each point labelled with its
    row count, the diagonal, and below the rows per bin (log scale, empty bins left out). The axes stop
    at the upper edge of the last filled bin, so a CVR of a few percent is not lost in one corner."""
    filled = bins.counts > 0
    if not filled.any():
        raise ValueError("plot_calibration_bins: every bin is empty")
    last = int(np.flatnonzero(filled)[-1])
    limit = float(max(bins.edges[last + 1], np.nanmax(bins.mean_true[filled])))
    figure = _new_figure(6.4, 6.4)
    top = figure.add_subplot(2, 1, 1)
    top.plot([0, limit], [0, limit], linestyle="--", color="grey", linewidth=0.9, label="perfectly calibrated")
    top.plot(bins.mean_pred[filled], bins.mean_true[filled], marker="o", linewidth=1.6,
             label=f"model (ECE {bins.ece:.4f})")
    for x, y, count in zip(bins.mean_pred[filled], bins.mean_true[filled], bins.counts[filled]):
        top.annotate(f"{int(count)}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    top.set_xlim(0, limit)
    top.set_ylim(0, limit)
    top.set_ylabel(f"mean {target} in the bin")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom = figure.add_subplot(2, 1, 2)
    widths = np.diff(bins.edges)
    bottom.bar(bins.edges[:-1][filled], bins.counts[filled], width=widths[filled], align="edge",
               edgecolor="black", linewidth=0.5)
    bottom.set_yscale("log")
    bottom.set_ylim(bottom=0.8)  # bars rise from one row, not from wherever the log axis happens to start
    bottom.set_xlim(0, limit)
    bottom.set_xlabel("predicted probability (equal-width bins)")
    bottom.set_ylabel("rows")
    return _save(figure, path)


@_matplotlib_defaults
def plot_cumulative_slope(
    curves: Curves,
    path: str | os.PathLike[str],
    title: str = "Cumulative slope (CS-AUUC)",
    global_slope: float | None = None,
    n_rows: int | None = None,
) -> str:
    """Cumulative-slope curves (phi, beta(phi) * phi * N) of UniMVT's CS-AUUC, e.g. from
    ``uplift_metrics.cumulative_slope_curve``; with ``global_slope`` and ``n_rows`` also the
    global-slope line beta_global * phi * N that CS-Qini subtracts."""
    figure = _new_figure()
    axes = figure.add_subplot(1, 1, 1)
    for name, xs, ys in _checked_curves(curves):
        axes.plot(xs, ys, label=name, linewidth=1.6)
    if global_slope is not None and n_rows is not None:
        axes.plot([0.0, 1.0], [0.0, float(global_slope) * n_rows], linestyle="--", color="black",
                  linewidth=1.0, label="global slope")
    return _finish(axes, path, "fraction of users targeted (phi)", "beta(phi) x phi N", title)


@_matplotlib_defaults
def plot_label_rate_sweep(
    curves: Curves,
    path: str | os.PathLike[str],
    markers: Mapping[str, float] | None = None,
    title: str = "AUC vs. counterfactual label rate",
) -> str:
    """ESCIM Fig. 3's layout: each metric (``{name: (rates, values)}``) against the share of
    non-clicked rows labelled 1, on a log axis, with a vertical line per named cut-off in
    ``markers`` (e.g. the rates the max and ratio transforms gave)."""
    checked = _checked_curves(curves)
    if any((xs <= 0).any() for _, xs, _ in checked):
        raise ValueError("label rates must be > 0 (log axis)")
    figure = _new_figure()
    axes = figure.add_subplot(1, 1, 1)
    for name, xs, ys in checked:
        axes.plot(xs, ys, marker="o", label=name, linewidth=1.6)
    for (name, rate), style in zip((markers or {}).items(), ("-", ":", "-.", "--")):
        axes.axvline(float(rate), color="black", linestyle=style, linewidth=1.0, label=f"{name} ({rate:.3g})")
    axes.set_xscale("log")
    return _finish(axes, path, "share of non-clicked exposures labelled 1", "AUC", title)
