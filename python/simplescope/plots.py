"""Figures for :class:`simplescope.results.Results` (matplotlib, imported lazily).

Lines follow the published figures: logitlens dashed blue, patchscope dotted green, simplescope
dash-dot purple; any other method gets a distinct solid style.  A grid method (source layer x
target layer) is drawn as a heatmap with a colorbar.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ._atomic import atomic_write
from ._fields import check_metric, unknown_name

#: Fixed styles of the three standard methods.
STYLES = {
    "logitlens": {"color": "tab:blue", "linestyle": "--"},
    "patchscope": {"color": "tab:green", "linestyle": ":"},
    "simplescope": {"color": "tab:purple", "linestyle": "-."},
}
_OTHER_COLORS = ("tab:orange", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "black")
_OTHER_MARKERS = (None, "o", "s", "^", "v", "D")

LABELS = {"prec1": "precision@1", "surprisal": "surprisal (nats)", "paper_surprisal": "paper surprisal (nats)"}
DPI = 120


def style_for(method: str, other_index: int) -> dict:
    """Line style of ``method``; ``other_index`` numbers the non-standard methods from 0."""
    if method in STYLES:
        return dict(STYLES[method])
    c = _OTHER_COLORS[other_index % len(_OTHER_COLORS)]
    mk = _OTHER_MARKERS[(other_index // len(_OTHER_COLORS)) % len(_OTHER_MARKERS)]
    st = {"color": c, "linestyle": "-"}
    if mk:
        st["marker"] = mk
    return st


def _new_figure(figsize):
    """A new Figure.  Uses pyplot (so notebooks show it) and falls back to Agg when headless."""
    import matplotlib

    if ("matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ
            and sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _figure_and_axes(ax, figsize):
    """The given axes and their Figure, or a new Figure of ``figsize`` and its axes."""
    if ax is None:
        return _new_figure(figsize)
    return ax.figure, ax


def _title(res, text: str) -> str:
    model = res.meta.get("model") or res.meta.get("model_path")
    tail = f"{res.n_prompts} prompts" + (f", {os.path.basename(str(model).rstrip('/'))}" if model else "")
    return f"{text} ({tail})"


def plot(res, metric: str = "prec1", ax=None, path=None, method=None, title=None):
    """Draw ``metric`` for ``res`` and return the Figure; save it to ``path`` if given."""
    check_metric(metric)
    if method is not None and res.is_grid(method):  # is_grid names an unknown method
        fig = _heatmap(res, metric, method, ax, title)
    else:
        methods = [method] if method is not None else res.line_methods
        if not methods:
            raise unknown_name("line method", None, res.line_methods)
        fig = _lines(res, metric, methods, ax, title)
    if path is not None:
        save_figure(fig, path)
    return fig


def _lines(res, metric, methods, ax, title):
    fig, ax = _figure_and_axes(ax, (7.0, 4.5))
    others = 0
    x = np.asarray(res.layers)
    for m in methods:
        st = style_for(m, others)
        if m not in STYLES:
            others += 1
        ax.plot(x, res.metric(metric)[m], label=m, linewidth=2.0, **st)
    ax.set_xlabel("layer")
    ax.set_ylabel(LABELS[metric])
    if metric == "prec1":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or _title(res, f"{LABELS[metric]} by layer"))
    return fig


def _heatmap(res, metric, method, ax, title):
    fig, ax = _figure_and_axes(ax, (7.0, 5.5))
    grid = res.metric(metric)[method]  # (n_layers, n_target_layers)
    kw = {"vmin": 0.0, "vmax": 1.0} if metric == "prec1" else {}
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest", **kw)
    src, tgt = res.layers, res.target_layers[method]
    for setter, ids in ((ax.set_yticks, src), (ax.set_xticks, tgt)):
        step = max(1, -(-len(ids) // 14))
        pos = list(range(0, len(ids), step))
        setter(pos, [str(ids[i]) for i in pos])
    ax.set_xlabel("target layer")
    ax.set_ylabel("source layer")
    fig.colorbar(im, ax=ax, label=LABELS[metric])
    ax.set_title(title or _title(res, f"{method}: {LABELS[metric]}"))
    return fig


def save_figure(fig, path, dpi: int = DPI) -> str:
    """Save ``fig`` atomically; the format comes from the extension (PNG when there is none)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight"), binary=True)
    return path
