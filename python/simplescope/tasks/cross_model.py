"""Cross-model patching (Patchscopes §4.4): can a hidden state of one model, mapped affinely into
another model's residual stream, make the other model predict what the first one would?

1. Fit. For every (source layer ℓ, target layer ℓ*), an affine map h_target ≈ h_source @ W + b is
   fitted by least squares on hidden states of the same texts at the same positions in both models
   (``train_texts``; ``positions_per_text`` random positions per text, seeded): the block output
   of layer ℓ of the source model and of layer ℓ* of the target model. The sums are streamed
   (simplescope.lstsq), so memory does not grow with the number of texts; source layers are
   fitted in groups whose sums fit in ``fit_memory`` bytes.
2. Evaluate. For each eval text and its random position p, the source model's hidden state at
   (ℓ, p), mapped, replaces the output of layer ℓ* of the target model at p of the same text, and
   the target's next-token prediction at p is read. Against the source model's own prediction y
   at p: ``prec1`` = [patched argmax == y], ``surprisal`` = −ln p_patched(y) (simplescope's
   definition) and ``paper_surprisal`` = −ln p_source(patched argmax) (the paper's code). Natural
   logs; no BOS (the paper's GPT-J runs); texts are cut to ``max_tokens`` tokens (256 as the paper).

Both models must share one vocabulary: the same vocab_size and the same tokens for every text
(checked before any work).
"""
from __future__ import annotations

import os

import numpy as np

from ..lstsq import AffineMap, StreamingLstsq, _as_f64
from ._common import Run, check_layers, check_positive, model_settings, need_tokenizer, progress_bar
from ._store import TaskResult, register

MAX_TOKENS = 256


class GroupedLstsq(StreamingLstsq):
    """One source layer's X against several target layers' Y side by side ([n, k * d_out]): one
    XᵀX and one solve for all of them (least squares decouples by output column), and the
    residual of each block of columns kept apart (per-pair mse and R²)."""

    def __init__(self, d_in: int, d_out: int, k: int):
        super().__init__(d_in, d_out * k)
        self.block, self.k = int(d_out), int(k)
        self.yy_cols = np.zeros(d_out * k)

    def add(self, X, Y):
        X, Y = _as_f64(X, "X"), _as_f64(Y, "Y")
        super().add(X, Y)
        self.yy_cols += (Y * Y).sum(0)

    def solve_blocks(self) -> list[AffineMap]:
        """The k maps, each with its own mse and R² (the residual computed in float64)."""
        if self.n <= self.d_in:
            super().solve()  # its error names the rows needed
        n = self.n
        mx, my = self.sx / n, self.sy / n
        cxx = self.xx - n * np.outer(mx, mx)
        cxy = self.xy - n * np.outer(mx, my)
        W, *_ = np.linalg.lstsq(cxx, cxy, rcond=None)  # as StreamingLstsq.solve, all blocks at once
        b = my - mx @ W
        tot_cols = self.yy_cols - n * my * my
        expl_cols = np.sum(W * cxy, axis=0)
        maps = []
        for j in range(self.k):
            s = slice(j * self.block, (j + 1) * self.block)
            total = float(tot_cols[s].sum())
            resid = max(0.0, total - float(expl_cols[s].sum()))
            maps.append(AffineMap(W=W[:, s].astype(np.float32), b=b[s].astype(np.float32),
                                  mse=resid / (n * self.block), r2=1.0 - resid / total if total > 0 else float("nan")))
        return maps


def fit_maps(source, target, texts_tokens, positions, source_layers, target_layers, *, fit_memory=2 ** 31,
             chunk_texts=64, progress=True) -> dict:
    """{(ℓ, ℓ*): AffineMap} fitted on the hidden states of texts_tokens[i] at positions[i] (a list
    of positions per text) in both models."""
    d_s, d_t = int(source.config["n_embd"]), int(target.config["n_embd"])
    T = list(target_layers)
    per_layer = 8 * (d_s * d_s + d_s * d_t * len(T) + d_t * len(T)) * 2  # sums, and a solve's copies
    group = max(1, int(fit_memory // max(1, per_layer)))
    groups = [list(source_layers)[i:i + group] for i in range(0, len(source_layers), group)]
    chunks = [list(range(i, min(len(texts_tokens), i + chunk_texts))) for i in range(0, len(texts_tokens), chunk_texts)]
    bar = progress_bar(len(groups) * len(chunks), 0, "fit maps", progress, unit="batch")
    maps = {}
    try:
        for G in groups:
            acc = {ls: GroupedLstsq(d_s, d_t, len(T)) for ls in G}
            for idx in chunks:
                prompts = [texts_tokens[i] for i in idx for _ in positions[i]]
                pos = [p for i in idx for p in positions[i]]
                m = len(prompts)
                if m == 0:
                    continue
                X = source.hidden_states(prompts * len(G), [ls for ls in G for _ in range(m)], pos * len(G))
                Y = target.hidden_states(prompts * len(T), [lt for lt in T for _ in range(m)], pos * len(T))
                X = X.double().reshape(len(G), m, d_s)
                Y = Y.double().reshape(len(T), m, d_t).permute(1, 0, 2).reshape(m, len(T) * d_t)
                for g, ls in enumerate(G):
                    acc[ls].add(X[g], Y)
                if bar is not None:
                    bar.update(1)
            for ls in G:
                for lt, mp in zip(T, acc.pop(ls).solve_blocks()):
                    maps[(ls, lt)] = mp
    finally:
        if bar is not None:
            bar.close()
    return maps


def _tokens(model, texts, what: str):
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of texts or token lists, not a single string")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what}: no texts given (empty list)")
    if all(isinstance(t, str) for t in texts):
        need_tokenizer(model, what)
        return texts, model.to_tokens(texts)
    if any(isinstance(t, str) for t in texts):
        raise TypeError(f"{what} mixes texts and token lists")
    return None, [[int(v) for v in np.asarray(t).reshape(-1)] for t in texts]


def check_same_vocabulary(source, target, texts_by_name: dict) -> dict:
    """Token lists per name (tokenized by the source), after checking that the target has the same
    vocabulary size and tokenizes every text the same."""
    vs, vt = int(source.config["vocab_size"]), int(target.config["vocab_size"])
    if vs != vt:
        raise ValueError(f"vocabularies differ: the source model has {vs} tokens, the target {vt}; cross-model "
                         "patching compares the two models' next-token predictions and needs one vocabulary")
    out = {}
    for name, texts in texts_by_name.items():
        raw, toks = _tokens(source, texts, name)
        if raw is not None and target is not source:
            _, toks_t = _tokens(target, raw, name)
            for i, (a, b) in enumerate(zip(toks, toks_t)):
                if a != b:
                    raise ValueError(f"vocabularies differ: {name} row {i} is tokenized differently by the source "
                                     f"and the target model ({len(a)} vs {len(b)} tokens)")
        vmax = max((max(t) for t in toks if t), default=-1)
        if vmax >= vs:
            raise ValueError(f"{name}: token id {vmax} outside the vocabulary of {vs}")
        out[name] = toks
    return out


def draw_positions(tokens, k: int, rng) -> list[list[int]]:
    """k distinct random positions per text (all of them when the text is shorter), sorted."""
    out = []
    for t in tokens:
        n = len(t)
        out.append(sorted(int(p) for p in rng.choice(n, size=min(k, n), replace=False)) if n else [])
    return out


@register("cross_model")
class CrossModelResult(TaskResult):
    """``df``: one row per (eval sample, layer_source, layer_target) with columns sample (eval text),
    position, layer_source, layer_target, source_top1, patched_top1, prec1, surprisal,
    paper_surprisal, fit_r2 and fit_mse (the map's fit on the training rows)."""

    METRICS = ("prec1", "surprisal", "paper_surprisal")

    def summary(self):
        import pandas as pd
        cols = ["layer_source", "layer_target", *self.METRICS, "fit_r2", "fit_mse", "n"]
        if not len(self.df):
            return pd.DataFrame(columns=cols)
        g = self.df.groupby(["layer_source", "layer_target"])
        s = g[list(self.METRICS) + ["fit_r2", "fit_mse"]].mean()
        s["n"] = g.size()
        return s.reset_index()[cols]

    def grid(self, metric: str = "prec1"):
        """A metric's mean as a source layer x target layer DataFrame."""
        if metric not in self.METRICS + ("fit_r2", "fit_mse"):
            raise ValueError(f"unknown metric {metric!r} (known: {', '.join(self.METRICS + ('fit_r2', 'fit_mse'))})")
        return self.df.groupby(["layer_source", "layer_target"])[metric].mean().unstack()

    def plot(self, metric: str = "prec1", path=None, ax=None, title=None):
        from .plots import heatmap
        label = {"prec1": "precision@1", "surprisal": "surprisal (nats)",
                 "paper_surprisal": "paper surprisal (nats)", "fit_r2": "R² of the map", "fit_mse": "MSE of the map"}
        kw = {"vmin": 0.0, "vmax": 1.0} if metric == "prec1" else {}
        m = self.meta
        t = title or (f"cross-model {metric}: {os.path.basename(str(m.get('source', '')).rstrip('/'))} → "
                      f"{os.path.basename(str(m.get('target', '')).rstrip('/'))} ({m.get('n_eval', '?')} texts)")
        return heatmap(self.grid(metric), label[metric], t, path=path, ax=ax, **kw)

    def figures(self):
        return [(f"{mt}.png", (lambda p, mt=mt: self.plot(mt, path=p))) for mt in ("prec1", "surprisal")]


def cross_model(source, target, train_texts, eval_texts, source_layers=None, target_layers=None, *,
                positions_per_text: int = 1, max_tokens: int = MAX_TOKENS, seed: int = 42, out=None,
                progress: bool = True, fit_memory: int = 2 ** 31, eval_rows: int = 1024,
                save_maps: bool = False) -> CrossModelResult:
    """Fits the affine maps and evaluates them (module docstring); returns a CrossModelResult.

    source, target: two loaded models (the same one is allowed). train_texts, eval_texts: texts
    (or token lists). source_layers, target_layers: default every layer of each model.
    positions_per_text: (text, position) training rows per text; they must outnumber the source
    model's n_embd. out: a folder written as the run goes (resumable per layer pair; with
    ``save_maps`` the fitted maps are kept there too, as maps/L-LT.npz, so a resumed run does not
    fit them again)."""
    S = check_layers(source_layers, source.n_layers, range(source.n_layers), "source_layers")
    T = check_layers(target_layers, target.n_layers, range(target.n_layers), "target_layers")
    positions_per_text = check_positive(positions_per_text, "positions_per_text")
    max_tokens = check_positive(max_tokens, "max_tokens")
    eval_rows = check_positive(eval_rows, "eval_rows")
    toks = check_same_vocabulary(source, target, {"train_texts": train_texts, "eval_texts": eval_texts})
    n_ctx = min(int(source.config.get("n_positions", 2048)), int(target.config.get("n_positions", 2048)))
    cap = min(max_tokens, n_ctx)
    train = [t[:cap] for t in toks["train_texts"]]
    evals = [t[:cap] for t in toks["eval_texts"]]
    rng = np.random.default_rng(seed)
    train_pos = draw_positions(train, positions_per_text, rng)
    eval_pos = [p[0] if p else -1 for p in draw_positions(evals, 1, np.random.default_rng([seed, 1]))]
    n_rows = sum(len(p) for p in train_pos)
    d_s = int(source.config["n_embd"])
    if n_rows <= d_s:
        raise ValueError(f"train_texts give {n_rows} (text, position) rows; an affine map from the source's "
                         f"{d_s} dimensions needs more than {d_s} (give more texts or a larger positions_per_text)")
    keep = [i for i, p in enumerate(eval_pos) if p >= 0]
    if not keep:
        raise ValueError("eval_texts: every text is empty")
    prefixes = [evals[i][:eval_pos[i] + 1] for i in keep]
    settings = {"source": model_settings(source), "target": model_settings(target),
                "n_train": len(train), "n_eval": len(evals), "positions_per_text": positions_per_text,
                "max_tokens": max_tokens, "seed": int(seed),
                "train_digest": _digest(train), "eval_digest": _digest(evals)}
    meta = {"source": source.path, "target": target.path, "source_layers": S, "target_layers": T,
            "n_train_texts": len(train), "n_train_rows": n_rows, "n_eval": len(keep),
            "n_eval_empty": len(evals) - len(keep), "positions_per_text": positions_per_text,
            "max_tokens": max_tokens, "seed": int(seed)}
    run = Run(out, "cross_model", settings, ("layer_source", "layer_target"))
    pairs = [(ls, lt) for ls in S for lt in T]
    todo = [p for p in pairs if p not in run.done]
    run.start(meta)
    if not todo:
        return run.finish(CrossModelResult, meta)

    maps_dir = os.path.join(out, "maps") if (out and save_maps) else None
    maps = _load_maps(maps_dir, todo)
    need_ls = sorted({ls for ls, lt in todo if (ls, lt) not in maps})
    if need_ls:
        need_lt = sorted({lt for ls, lt in todo if ls in need_ls})
        fitted = fit_maps(source, target, train, train_pos, need_ls, need_lt, fit_memory=fit_memory,
                          progress=progress)
        for k, mp in fitted.items():
            if k in todo and k not in maps:
                maps[k] = mp
                if maps_dir:
                    _save_map(maps_dir, k, mp)

    import pandas as pd
    import torch
    y, src_logp = _source_predictions(source, prefixes, source.n_layers, eval_rows)
    n = len(prefixes)
    need = sorted({ls for ls, _ in todo})
    # every needed source layer of every eval prefix in one call: one source pass per prefix
    H = source.hidden_states(prefixes * len(need), [ls for ls in need for _ in range(n)], [-1] * (n * len(need)))
    H = {ls: H[i * n:(i + 1) * n].float().cpu() for i, ls in enumerate(need)}
    by_target: dict[int, list[int]] = {}
    for ls, lt in todo:
        by_target.setdefault(lt, []).append(ls)
    samples = np.asarray(keep, dtype=np.int64)
    positions = np.asarray([eval_pos[i] for i in keep], np.int64)
    bar = progress_bar(len(pairs), len(pairs) - len(todo), "cross-model", progress)
    try:
        for lt, lss in by_target.items():
            # All source layers of one target layer go to the core together: the rows of one
            # prefix then share its target pass (one per prefix and target layer) and continue
            # from block lt + 1 with their mapped vectors.
            top = np.empty((len(lss), n), dtype=np.int64)
            surprisal = np.empty((len(lss), n))
            per = max(1, eval_rows // len(lss))
            for lo in range(0, n, per):
                hi = min(n, lo + per)
                vecs = torch.cat([H[ls][lo:hi] @ torch.from_numpy(maps[(ls, lt)].W) + torch.from_numpy(maps[(ls, lt)].b)
                                  for ls in lss])
                lg = target.patch(prefixes[lo:hi] * len(lss), vecs, lt, -1, progress=False).logits
                logp = torch.log_softmax(lg.double(), -1).reshape(len(lss), hi - lo, -1)
                top[:, lo:hi] = logp.argmax(-1).numpy()
                surprisal[:, lo:hi] = -logp[:, torch.arange(hi - lo), torch.as_tensor(y[lo:hi])].numpy()
            for j, ls in enumerate(lss):
                mp = maps[(ls, lt)]
                run.add(pd.DataFrame({
                    "sample": samples, "position": positions,
                    "layer_source": np.full(n, ls, np.int64), "layer_target": np.full(n, lt, np.int64),
                    "source_top1": y, "patched_top1": top[j], "prec1": (top[j] == y).astype(np.float64),
                    "surprisal": surprisal[j], "paper_surprisal": -src_logp[np.arange(n), top[j]].astype(np.float64),
                    "fit_r2": np.full(n, mp.r2), "fit_mse": np.full(n, mp.mse)}))
            if bar is not None:
                bar.update(len(lss))
    finally:
        if bar is not None:
            bar.close()
    return run.finish(CrossModelResult, meta)


def _source_predictions(source, prefixes, n_layer: int, chunk: int):
    """The source model's own prediction at the last token of each prefix and its log-probs
    (float32 [n, vocab]): the last block's output patched into its own last position reads the
    logits through ln_f and the unembedding alone."""
    import torch
    ys, logps = [], []
    for lo in range(0, len(prefixes), chunk):
        part = prefixes[lo:lo + chunk]
        h = source.hidden_states(part, n_layer - 1, -1)
        lg = source.patch(part, h, n_layer - 1, -1, progress=False).logits
        logp = torch.log_softmax(lg.double(), -1)
        ys.append(logp.argmax(-1).numpy())
        logps.append(logp.float().numpy())
    return np.concatenate(ys).astype(np.int64), np.concatenate(logps)


def _digest(tokens) -> str:
    import hashlib
    h = hashlib.sha256()
    for t in tokens:
        h.update(np.asarray(t, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def _map_path(d: str, k) -> str:
    return os.path.join(d, f"{k[0]}-{k[1]}.npz")


def _load_maps(d, todo) -> dict:
    out = {}
    if not d:
        return out
    for k in todo:
        p = _map_path(d, k)
        if os.path.exists(p):
            with np.load(p) as z:
                out[k] = AffineMap(W=z["W"], b=z["b"], mse=float(z["mse"]), r2=float(z["r2"]))
    return out


def _save_map(d: str, k, mp: AffineMap) -> None:
    from .._atomic import atomic_write
    os.makedirs(d, exist_ok=True)
    atomic_write(_map_path(d, k), lambda f: np.savez(f, W=mp.W, b=mp.b, mse=mp.mse, r2=mp.r2), binary=True)
