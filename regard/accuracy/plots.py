"""The audit report's pictures, drawn with matplotlib's Agg backend (no display needed) to PNG bytes.

Each function takes numbers already computed by `regard.accuracy.metrics` and returns PNG bytes, so the
report can both embed them in its HTML and write them beside it.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from regard.accuracy.metrics import Roc

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _figure(width: float = 6.4, height: float = 4.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def roc_plot(curves: dict[str, Roc], threshold_points: dict[str, tuple[float, float]]) -> bytes:
    """TAR against FMR (log scale), one curve per set of pairs, the deployed threshold marked."""
    fig, ax = _figure()
    for (label, curve), colour in zip(curves.items(), _COLOURS):
        keep = curve.fmr > 0
        ax.plot(curve.fmr[keep], curve.tar[keep], color=colour, lw=1.6, label=f"{label}")
        if label in threshold_points:
            fmr, tar = threshold_points[label]
            ax.plot([max(fmr, _floor(curve))], [tar], "o", color=colour, ms=5)
    ax.set_xscale("log")
    ax.set_xlim(left=min(_floor(c) for c in curves.values()), right=1.0)
    ax.set_ylim(max(0.0, min(_tar_floor(c) for c in curves.values())), 1.002)
    ax.set_xlabel("false-match rate (FMR, log scale)")
    ax.set_ylabel("true-accept rate (TAR = 1 - FNMR)")
    ax.set_title("ROC: dots mark the deployed threshold")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def det_plot(curves: dict[str, Roc], threshold_points: dict[str, tuple[float, float]]) -> bytes:
    """FNMR against FMR, both on log scales (NIST's DET, with log axes)."""
    fig, ax = _figure()
    y_floor = min(10 ** np.floor(np.log10(0.5 / c.genuine)) for c in curves.values())
    for (label, curve), colour in zip(curves.items(), _COLOURS):
        keep = curve.fmr > 0
        ax.plot(curve.fmr[keep], np.maximum(curve.fnmr[keep], y_floor), color=colour, lw=1.6, label=label)
        if label in threshold_points:
            fmr, tar = threshold_points[label]
            if fmr > 0:
                ax.plot([fmr], [max(1 - tar, y_floor)], "o", color=colour, ms=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(left=min(_floor(c) for c in curves.values()), right=1.0)
    ax.set_ylim(y_floor, 1.2)
    ax.set_xlabel("false-match rate (FMR, log scale)")
    ax.set_ylabel("false non-match rate (FNMR, log scale; 0 at the floor)")
    ax.set_title("DET: lower left is better; dots mark the deployed threshold")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def score_plot(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> bytes:
    """Histograms (as densities, log scale) of genuine and impostor scores, the threshold as a line."""
    fig, ax = _figure()
    bins = np.linspace(0, 100, 101)
    ax.hist(impostor, bins=bins, density=True, histtype="stepfilled", alpha=0.45, color=_COLOURS[1],
            label=f"different people ({impostor.size:,} pairs)")
    ax.hist(genuine, bins=bins, density=True, histtype="stepfilled", alpha=0.45, color=_COLOURS[0],
            label=f"same person ({genuine.size:,} pairs)")
    ax.axvline(threshold, color="black", lw=1.4, ls="--", label=f"threshold {threshold:.1f}")
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 30)  # room for the legend above the bars
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (0-100)")
    ax.set_ylabel("share of pairs per score unit (log scale)")
    ax.set_title("Score distributions")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def group_plot(
    groups: Sequence[str],
    fmr: Sequence[float | None],
    fmr_ci: Sequence[tuple[float, float] | None],
    fnmr: Sequence[float | None],
    fnmr_ci: Sequence[tuple[float, float] | None],
    threshold: float,
) -> bytes:
    """Per-group FMR and FNMR at the threshold, as bars with their 95 % intervals (log scale; a rate
    of 0 is drawn at the axis floor with its upper bound)."""
    fig, _ = _figure(7.2, 1.4 + 0.5 * len(groups))
    fig.clear()
    panels = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(groups))
    for ax, values, intervals, title, colour in (
        (panels[0], fmr, fmr_ci, "FMR (different people)", _COLOURS[1]),
        (panels[1], fnmr, fnmr_ci, "FNMR (same person)", _COLOURS[0]),
    ):
        known = [v for v in values if v] + [ci[1] for ci in intervals if ci and ci[1] > 0]
        floor = min(known) / 10 if known else 1e-6
        heights = [max(v, floor) if v is not None else floor for v in values]
        ax.barh(y, heights, color=colour, alpha=0.6, left=0)
        for k, ci in enumerate(intervals):
            if ci is not None:
                ax.plot([max(ci[0], floor), max(ci[1], floor)], [k, k], color="black", lw=1.4)
                ax.plot([max(ci[0], floor)] * 2, [k - 0.15, k + 0.15], color="black", lw=1.2)
                ax.plot([max(ci[1], floor)] * 2, [k - 0.15, k + 0.15], color="black", lw=1.2)
            if values[k] is None:
                ax.text(floor, k, "  not measurable", va="center", fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(left=floor)
        ax.set_title(f"{title} at {threshold:.1f}", fontsize=9)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    panels[0].set_yticks(y, labels=list(groups))
    panels[0].invert_yaxis()
    return _png(fig)


def _floor(curve: Roc) -> float:
    return 10 ** np.floor(np.log10(0.5 / curve.impostor))


def _tar_floor(curve: Roc) -> float:
    """The TAR where the curve leaves the plotted FMR range, rounded down to 0.05."""
    at = curve.tar[np.argmax(curve.fmr > 0)] if np.any(curve.fmr > 0) else 0.0
    return float(np.floor(at * 20) / 20)
