"""The published simplescope figures (GPT-J 6B, 28 layers) as reference data, and the comparison of a
:class:`~simplescope.results.Results` with them, layer by layer.

    ss.published.load()                  # {"logitlens" | "patchscope" | "simplescope": {"prec1", "surprisal"}}
    res.compare_published()              # table (printed) + figure; returns a DataFrame
    python -m simplescope compare DIR    # the same from a results folder

The figures ship with the package (``data/published/``, provenance in its README.md): per-layer
means over 698 documents (the ``seed`` preset of the Pile's deduplicated train split), published
with the original notebook, which calls simplescope's method "logitscope".  Only prec1 and
surprisal (−ln p_patched(source top-1)) were published, so only those are compared.

Layers: the figures have GPT-J 6B's 28.  Results of a 28-layer model are compared layer by layer
(``by="layer"``).  Results of a model of another depth (the demo model has 8) cannot be compared
directly; ``by="depth"`` (the default for them) compares at equal relative depth ℓ/(L−1), the
published curve linearly interpolated between its layers, and says so above the table — a
rough visual guide, not a reproduction (different model, weights and documents).  ``by="layer"``
on such results raises ValueError.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "published")
#: simplescope's method name -> the published file's name for it
NAMES = {"logitlens": "logitlens", "patchscope": "patchscope", "simplescope": "logitscope"}
N_LAYERS = 28
N_DOCS = 698  # every published prec1 is k / 698
COMPARED = ("prec1", "surprisal")


def load() -> dict[str, dict[str, np.ndarray]]:
    """The published per-layer means, keyed by simplescope's method names: {"prec1": [28],
    "surprisal": [28]} (float64) for logitlens, patchscope and simplescope."""
    out = {}
    for ours, theirs in NAMES.items():
        with open(os.path.join(DATA_DIR, f"patchscope_{theirs}.json"), encoding="utf-8") as f:
            rows = json.load(f)
        if len(rows) != N_LAYERS:
            raise ValueError(f"published {theirs}: {len(rows)} layers, want {N_LAYERS}")
        out[ours] = {k: np.array([float(r[k]) for r in rows]) for k in COMPARED}
    return out


def model_layers(res) -> int:
    """The number of layers of the model the results came from (config, else the layers seen)."""
    cfg = res.meta.get("config") or {}
    if cfg.get("n_layer"):
        return int(cfg["n_layer"])
    return max(res.layers) + 1 if res.layers else 0


def compare(res, methods=None, by: str | None = None):
    """A DataFrame, one row per (method, layer): ours next to the published figure and the
    difference (ours − published) for prec1 and surprisal, with ``prec1_2se``, twice the standard
    error of that difference (binomial, ours over our prompts, theirs over 698 documents).
    ``by``: "layer" (needs a 28-layer model), "depth" (equal relative depth, interpolated) or None
    (layer when the model has 28 layers, else depth).  ``df.attrs`` holds by, the note and the
    layer counts."""
    import pandas as pd

    L = model_layers(res)
    if by is None:
        by = "layer" if L == N_LAYERS else "depth"
    if by not in ("layer", "depth"):
        raise ValueError(f"by={by!r} (want 'layer', 'depth' or None)")
    if by == "layer" and L != N_LAYERS:
        raise ValueError(f"the published figures are for GPT-J 6B's {N_LAYERS} layers; these results come from a "
                         f"model of {L} layers, so no layer of it is a published layer. Compare by relative depth "
                         f"(by='depth'), or evaluate a {N_LAYERS}-layer model")
    pub = load()
    available = [m for m in res.line_methods if m in NAMES]
    if methods is None:
        methods = available
    else:
        methods = [methods] if isinstance(methods, str) else list(methods)
        for m in methods:
            if m not in NAMES:
                raise ValueError(f"no published figures for method {m!r} (published: {', '.join(NAMES)})")
            if m not in res.line_methods:
                raise ValueError(f"the results have no line method {m!r} (they have: {', '.join(res.line_methods)})")
    if not methods:
        raise ValueError(f"the results hold none of the published methods ({', '.join(NAMES)})")
    rows = []
    for m in methods:
        pe = res.per_example(m)
        for i, layer in enumerate(res.layers):
            if by == "layer":
                ref_layer = float(layer)
                ref = {k: pub[m][k][layer] for k in COMPARED}
            else:
                x = layer / (L - 1) if L > 1 else 1.0
                ref_layer = x * (N_LAYERS - 1)
                grid = np.arange(N_LAYERS, dtype=np.float64)
                ref = {k: float(np.interp(ref_layer, grid, pub[m][k])) for k in COMPARED}
            p = pe["prec1"][:, i].astype(np.float64)
            p = p[~np.isnan(p)]
            ours_p = float(p.mean()) if p.size else math.nan
            s = pe["surprisal"][:, i].astype(np.float64)
            ours_s = float(np.nanmean(s)) if np.isfinite(s).any() else math.nan
            se = math.sqrt(ours_p * (1 - ours_p) / max(p.size, 1) + ref["prec1"] * (1 - ref["prec1"]) / N_DOCS)
            rows.append({"method": m, "layer": int(layer), "published_layer": ref_layer,
                         "prec1": ours_p, "published_prec1": ref["prec1"], "diff_prec1": ours_p - ref["prec1"],
                         "prec1_2se": 2 * se,
                         "surprisal": ours_s, "published_surprisal": ref["surprisal"],
                         "diff_surprisal": ours_s - ref["surprisal"]})
    df = pd.DataFrame(rows)
    df.attrs.update(by=by, n_layer=L, published_layers=N_LAYERS, note=note(by, L))
    return df


def note(by: str, L: int) -> str:
    if by == "layer":
        return (f"layer by layer against the published GPT-J 6B figures ({N_DOCS} documents, seed preset); "
                "different random positions, so differences within ±2 SE are sampling noise")
    return (f"NOT A DIRECT COMPARISON: this model has {L} layers, the published figures GPT-J 6B's {N_LAYERS}. "
            f"Compared at equal relative depth: our layer l against published layer l·{N_LAYERS - 1}/{L - 1} "
            "(linearly interpolated). Different model, weights and documents: a visual guide only")


def format_table(df) -> str:
    """The comparison as text: per method, one line per layer."""
    by = df.attrs.get("by", "layer")
    head = ["layer", "pub layer" if by == "depth" else "", "prec1", "published", "diff", "±2SE",
            "surprisal", "published", "diff"]
    out = [df.attrs.get("note", "")]
    for m, g in df.groupby("method", sort=False):
        out.append("")
        out.append(f"{m}" + (f" (published as \"{NAMES[m]}\")" if NAMES[m] != m else ""))
        cells = [head]
        for r in g.itertuples():
            cells.append([str(r.layer), f"{r.published_layer:.1f}" if by == "depth" else "",
                          f"{r.prec1:.3f}", f"{r.published_prec1:.3f}", f"{r.diff_prec1:+.3f}", f"{r.prec1_2se:.3f}",
                          f"{r.surprisal:.2f}", f"{r.published_surprisal:.2f}", f"{r.diff_surprisal:+.2f}"])
        cells.append(["mean", "", f"{g.prec1.mean():.3f}", f"{g.published_prec1.mean():.3f}",
                      f"{g.diff_prec1.mean():+.3f}", "", f"{g.surprisal.mean():.2f}",
                      f"{g.published_surprisal.mean():.2f}", f"{g.diff_surprisal.mean():+.2f}"])
        keep = [j for j in range(len(head)) if any(row[j] for row in cells)]
        widths = [max(len(row[j]) for row in cells) for j in keep]
        for k, row in enumerate(cells):
            out.append("  ".join(row[j].rjust(w) for j, w in zip(keep, widths)))
            if k == 0 or k == len(cells) - 2:
                out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def plot(df, path=None, title=None):
    """Two panels (prec1, surprisal): ours solid, published dashed, one colour per method, against
    our layers (the published curve at the compared layer or depth).  Saved to ``path`` if given."""
    from .plots import LABELS, STYLES, _new_figure, save_figure

    fig, _ = _new_figure((11.0, 4.2))
    fig.clf()
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, COMPARED):
        for m, g in df.groupby("method", sort=False):
            color = STYLES.get(m, {}).get("color", "black")
            ax.plot(g.layer, g[metric], color=color, linestyle="-", linewidth=2, label=f"{m} (ours)")
            ax.plot(g.layer, g[f"published_{metric}"], color=color, linestyle="--", linewidth=1.5,
                    marker="o", markersize=3, label=f"{m} (published)")
        ax.set_xlabel("layer" + (" (published at equal relative depth)" if df.attrs.get("by") == "depth" else ""))
        ax.set_ylabel(LABELS[metric])
        if metric == "prec1":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    by = df.attrs.get("by")
    fig.suptitle(title or ("ours vs published (GPT-J 6B)" + (
        f" — NOT direct: {df.attrs.get('n_layer')} vs {N_LAYERS} layers, by relative depth" if by == "depth" else "")),
        fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig


def compare_and_report(res, methods=None, by=None, path=None, file=None, show_plot=True):
    """compare + print the table to ``file`` (stdout) + the figure (saved to ``path`` if given)."""
    df = compare(res, methods=methods, by=by)
    print(format_table(df), file=file or sys.stdout)
    if show_plot or path is not None:
        plot(df, path=path)
    return df
