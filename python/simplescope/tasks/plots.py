"""Figures of the tasks: a source layer x target layer heatmap and a metric-by-layer line."""
from __future__ import annotations

import numpy as np

from ..plots import _figure_and_axes, save_figure


def heatmap(grid, label: str, title: str, path=None, ax=None, vmin=None, vmax=None, cmap="viridis"):
    """grid: DataFrame indexed by source layer with target layers as columns."""
    fig, ax = _figure_and_axes(ax, (7.0, 5.5))
    vals = np.asarray(grid.to_numpy(dtype=np.float64)) if len(grid) else np.zeros((0, 0))
    im = ax.imshow(vals, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    src, tgt = [int(v) for v in grid.index], [int(v) for v in grid.columns]
    for setter, ids in ((ax.set_yticks, src), (ax.set_xticks, tgt)):
        step = max(1, -(-len(ids) // 14))
        pos = list(range(0, len(ids), step))
        setter(pos, [str(ids[i]) for i in pos])
    ax.set_xlabel("target layer")
    ax.set_ylabel("source layer")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def by_layer(x, ys: dict, label: str, title: str, path=None, ax=None, ylim=None):
    """One line per entry of ys (name -> values over x)."""
    fig, ax = _figure_and_axes(ax, (7.0, 4.5))
    for name, y in ys.items():
        ax.plot(list(x), list(y), marker="o", linewidth=2.0, label=name)
    ax.set_xlabel("layer")
    ax.set_ylabel(label)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    if len(ys) > 1:
        ax.legend()
    ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig
