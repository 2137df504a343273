"""The affine-mapping baseline of the Patchscopes paper (§4.1): per layer ℓ, a map

    h_ℓ  ↦  h_ℓ · W_ℓ + b_ℓ   ≈  h_{L-1}

fitted by least squares from the hidden state at layer ℓ (the output of block ℓ) to the last
block's output (before the final layer norm), at one random position of each training document.
Decoding h·W_ℓ + b_ℓ with the final layer norm and the unembedding is the baseline the paper
compares its Patchscope with; the logit lens is the same decoding with W = I, b = 0.

    maps = model.fit_affine(train_texts, n_docs=10_000, seed=0)    # -> AffineMaps
    maps.table()                                                   # fit residual per layer
    maps.save("maps/"); maps = ss.AffineMaps.load("maps/")
    res = model.evaluate(texts, methods=["logitlens", {"name": "affine", "maps": maps}])

The documents stream through ``model.hidden_states`` in batches (one forward per document reads
every layer) into one :class:`~simplescope.lstsq.StreamingLstsq` per layer, so memory does not
grow with the number of documents: it is 2 · n_layers · n_embd² float64 sums (for GPT-J 6B's 28
layers of 4096: 7.5 GB; fit fewer layers with ``layers=`` to need less).  Only numpy is imported
at module level.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ._atomic import atomic_write
from .lstsq import AffineMap, StreamingLstsq

FORMAT = "simplescope.affine_maps"
VERSION = 1
NPZ_NAME = "affine.npz"
JSON_NAME = "affine.json"
#: The model configuration keys a map set records and checks (the width and depth must match).
CONFIG_KEYS = ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions", "dtype")


@dataclass
class AffineMaps:
    """One affine map per fitted layer: ``W[i]`` [n_embd, n_embd] and ``b[i]`` [n_embd] (float32)
    for layer ``layers[i]``, with the fit's residual ``mse[i]`` (mean squared error per output
    dimension over the training rows) and ``r2[i]`` (fraction of the target's variance explained).
    ``meta`` records the model's configuration (``meta["config"]``), n_docs, seed, prepend_bos and
    the training positions' summary."""
    layers: list
    W: np.ndarray
    b: np.ndarray
    mse: np.ndarray
    r2: np.ndarray
    meta: dict = field(default_factory=dict)
    positions: np.ndarray | None = None  # [n_docs]: the training position of each document

    def __post_init__(self):
        self.layers = [int(l) for l in self.layers]
        self.W = np.asarray(self.W, dtype=np.float32)
        self.b = np.asarray(self.b, dtype=np.float32)
        self.mse = np.asarray(self.mse, dtype=np.float64)
        self.r2 = np.asarray(self.r2, dtype=np.float64)
        k = len(self.layers)
        if len(set(self.layers)) != k:
            raise ValueError(f"AffineMaps: a layer is listed twice in {self.layers}")
        if self.W.ndim != 3 or self.W.shape[0] != k or self.W.shape[1] != self.W.shape[2]:
            raise ValueError(f"AffineMaps: W has shape {self.W.shape}, want [{k}, n_embd, n_embd]")
        if self.b.shape != (k, self.W.shape[2]):
            raise ValueError(f"AffineMaps: b has shape {self.b.shape}, want [{k}, {self.W.shape[2]}]")
        if self.mse.shape != (k,) or self.r2.shape != (k,):
            raise ValueError(f"AffineMaps: mse {self.mse.shape} and r2 {self.r2.shape}, want [{k}]")

    @property
    def n_embd(self) -> int:
        return int(self.W.shape[2])

    def __getitem__(self, layer: int) -> AffineMap:
        """The map of one layer (a :class:`~simplescope.lstsq.AffineMap`, callable on [n, n_embd])."""
        i = self._index(layer)
        return AffineMap(W=self.W[i], b=self.b[i], mse=float(self.mse[i]), r2=float(self.r2[i]))

    def _index(self, layer) -> int:
        try:
            return self.layers.index(int(layer))
        except ValueError:
            raise KeyError(f"no affine map for layer {layer} (fitted layers: {self.layers})") from None

    def __repr__(self):
        n = self.meta.get("n_docs")
        return (f"<AffineMaps {len(self.layers)} layers, n_embd {self.n_embd}, {n} training documents, "
                f"mean R² {float(np.nanmean(self.r2)) if len(self.r2) else float('nan'):.3f}>")

    # ---------------------------------------------------------------- checks
    def check_model(self, config: dict, layers=None, what: str = "affine maps") -> None:
        """ValueError unless the maps fit a model of this configuration (same n_embd and n_layer)
        and cover every layer in ``layers`` (default: all of the model's)."""
        mine = self.meta.get("config") or {}
        if int(config["n_embd"]) != self.n_embd:
            raise ValueError(f"{what}: fitted for n_embd={self.n_embd} (W is [{self.n_embd}, {self.n_embd}]), "
                             f"but the model has n_embd={config['n_embd']}")
        if mine.get("n_layer") is not None and int(mine["n_layer"]) != int(config["n_layer"]):
            raise ValueError(f"{what}: fitted on a model with n_layer={mine['n_layer']}, "
                             f"but the model has n_layer={config['n_layer']}")
        bad = [l for l in self.layers if not 0 <= l < int(config["n_layer"])]
        if bad:
            raise ValueError(f"{what}: maps for layers {bad}, outside the model's n_layer={config['n_layer']}")
        want = range(int(config["n_layer"])) if layers is None else [int(l) for l in np.atleast_1d(layers)]
        missing = [l for l in want if l not in self.layers]
        if missing:
            raise ValueError(f"{what}: no map for layers {missing} (fitted layers: {self.layers}); "
                             "evaluate only fitted layers with layers=[...] or fit those layers")

    def wire(self, layers=None) -> list[dict]:
        """The maps as the core's method spec wants them ([{layer, W, b}]), for ``layers`` only."""
        want = self.layers if layers is None else [int(l) for l in np.atleast_1d(layers)]
        return [{"layer": l, "W": self.W[self._index(l)], "b": self.b[self._index(l)]} for l in want]

    # ---------------------------------------------------------------- tables
    def table(self) -> str:
        """The fit residual per layer: mse and R² (text)."""
        lines = [f"affine maps: {self.meta.get('n_docs')} training documents, seed {self.meta.get('seed')}, "
                 f"n_embd {self.n_embd}", f"{'layer':>5}  {'mse':>12}  {'R²':>8}"]
        for l, m, r in zip(self.layers, self.mse, self.r2):
            lines.append(f"{l:5d}  {m:12.6g}  {r:8.4f}")
        return "\n".join(lines)

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame({"layer": self.layers, "mse": self.mse, "r2": self.r2})

    # ---------------------------------------------------------------- files
    def save(self, path) -> list[str]:
        """Writes ``affine.npz`` (layers, W, b, mse, r2, positions) and ``affine.json`` (format,
        version, layers, the fit residual and meta: model config, n_docs, seed, ...) into the
        folder ``path`` (created if missing), each atomically.  Returns the paths written."""
        path = os.fspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"AffineMaps.save: {path!r} exists and is not a folder")
        os.makedirs(path, exist_ok=True)
        npz, js = os.path.join(path, NPZ_NAME), os.path.join(path, JSON_NAME)
        arrays = {"layers": np.asarray(self.layers, dtype=np.int64), "W": self.W, "b": self.b,
                  "mse": self.mse, "r2": self.r2}
        if self.positions is not None:
            arrays["positions"] = np.asarray(self.positions, dtype=np.int64)
        atomic_write(npz, lambda f: np.savez(f, **arrays), binary=True)
        doc = {"format": FORMAT, "version": VERSION, "layers": self.layers, "n_embd": self.n_embd,
               "mse": self.mse.tolist(), "r2": self.r2.tolist(), "meta": self.meta}
        atomic_write(js, lambda f: f.write(json.dumps(doc, indent=1, default=_json_default) + "\n"), binary=False)
        return [npz, js]

    @classmethod
    def load(cls, path) -> "AffineMaps":
        """Reads a folder written by :meth:`save` (or the path of its affine.npz / affine.json)."""
        path = os.fspath(path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        npz, js = os.path.join(folder, NPZ_NAME), os.path.join(folder, JSON_NAME)
        for p in (npz, js):
            if not os.path.exists(p):
                raise FileNotFoundError(f"AffineMaps.load: {p} does not exist (save writes {NPZ_NAME} and {JSON_NAME})")
        with open(js, encoding="utf-8") as f:
            doc = json.load(f)
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError(f"AffineMaps.load: {js} is not a {FORMAT} v{VERSION} file "
                             f"(format {doc.get('format')!r}, version {doc.get('version')!r})")
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        if [int(l) for l in arrays["layers"]] != [int(l) for l in doc["layers"]]:
            raise ValueError(f"AffineMaps.load: {npz} and {js} list different layers")
        return cls(layers=arrays["layers"].tolist(), W=arrays["W"], b=arrays["b"], mse=arrays["mse"],
                   r2=arrays["r2"], meta=doc.get("meta") or {}, positions=arrays.get("positions"))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} into affine.json")


# -------------------------------------------------------------------- fitting

def fit_affine(model, texts, layers=None, n_docs: int | None = None, seed: int = 0,
               prepend_bos: bool = True, batch_docs: int = 32, progress: bool = True) -> AffineMaps:
    """Fits, for each layer ℓ in ``layers`` (default all), the affine map from the layer-ℓ hidden
    state to the last block's output (before ln_f) by least squares over one random position of
    each of the first ``n_docs`` documents of ``texts`` (default all; texts or token id lists).

    Positions are drawn with ``numpy.random.default_rng(seed).integers(0, len(doc))`` per document,
    in document order (positions count BOS when ``prepend_bos``); documents longer than the
    model's context are cut to it.  An affine map of an n_embd-dimensional state needs more than
    n_embd rows, so ``n_docs`` must exceed n_embd (the paper: 10 000 documents for GPT-J's 4096).
    """
    cfg = model.config
    L, C = int(cfg["n_layer"]), int(cfg["n_embd"])
    layers = list(range(L)) if layers is None else [int(l) for l in np.atleast_1d(layers)]
    if not layers:
        raise ValueError("fit_affine: layers is empty")
    bad = [l for l in layers if not 0 <= l < L]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(f"fit_affine: layers {layers} must be distinct and in [0, {L}) (the model has n_layer={L})")
    if isinstance(texts, str):
        raise TypeError("fit_affine: texts must be a list of documents, not a single string")
    texts = list(texts)
    n = len(texts) if n_docs is None else int(n_docs)
    if n > len(texts):
        raise ValueError(f"fit_affine: n_docs={n} but only {len(texts)} documents were given")
    if n <= C:
        raise ValueError(f"fit_affine: n_docs={n} documents (one position each) cannot determine an affine map "
                         f"of the model's n_embd={C}-dimensional hidden state: need n_docs > {C}")
    if int(batch_docs) < 1:
        raise ValueError(f"fit_affine: batch_docs must be >= 1, got {batch_docs}")
    ids = _token_lists(model, texts[:n], prepend_bos, int(cfg["n_positions"]))
    rng = np.random.default_rng(seed)
    positions = np.array([rng.integers(0, len(t)) for t in ids], dtype=np.int64)
    last = L - 1
    fits = {l: StreamingLstsq(C, C) for l in layers}
    read = layers + ([last] if last not in layers else [])
    bar = _bar(n, progress)
    try:
        for lo in range(0, n, int(batch_docs)):
            docs = ids[lo:lo + int(batch_docs)]
            pos = positions[lo:lo + int(batch_docs)]
            k = len(docs)
            rows = model.hidden_states([d for d in docs for _ in read], [l for _ in docs for l in read],
                                       [int(p) for p in pos for _ in read])  # [k·len(read), C]
            h = rows.detach().to("cpu").double().numpy().reshape(k, len(read), C)
            y = h[:, read.index(last)]
            for j, l in enumerate(read):
                if l in fits:
                    fits[l].add(h[:, j], y)
            if bar is not None:
                bar.update(k)
    finally:
        if bar is not None:
            bar.close()
    solved = [fits[l].solve() for l in layers]
    meta = {"config": {k: cfg.get(k) for k in CONFIG_KEYS}, "model": getattr(model, "path", None),
            "n_docs": n, "seed": int(seed), "prepend_bos": bool(prepend_bos),
            "target": f"block {last} output (before ln_f)",
            "position_rule": "numpy default_rng(seed).integers(0, len) per document, in order",
            "mean_tokens": float(np.mean([len(t) for t in ids]))}
    return AffineMaps(layers=layers, W=np.stack([m.W for m in solved]), b=np.stack([m.b for m in solved]),
                      mse=[m.mse for m in solved], r2=[m.r2 for m in solved], meta=meta, positions=positions)


def _token_lists(model, texts, prepend_bos: bool, context: int) -> list[list[int]]:
    """Token ids of every document (BOS when asked), cut to the context; empty documents refused."""
    if all(isinstance(t, str) for t in texts):
        ids = model.to_tokens(texts, prepend_bos=prepend_bos)
    elif all(not isinstance(t, str) for t in texts):
        bos = [int(model.config["bos_token_id"])] if prepend_bos else []
        ids = [bos + [int(x) for x in np.asarray(t).reshape(-1)] for t in texts]
    else:
        raise TypeError("fit_affine: texts mix strings and token lists")
    for i, t in enumerate(ids):
        if not t:
            raise ValueError(f"fit_affine: document {i} has no tokens")
    return [t[:context] for t in ids]


def _bar(n: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=n, unit="doc", desc="fit_affine", leave=False)


# -------------------------------------------------------------------- evaluate's method spec

def resolve_methods(methods, config: dict, layers=None):
    """The methods with every affine one ({"name", "maps": AffineMaps or a saved folder}) checked
    against the model and turned into the core's spec {"name", "kind": "affine", "maps": [...]};
    also the affine methods' provenance for the results' meta ({name: maps.meta summary})."""
    if isinstance(methods, (str, dict)):
        methods = [methods]
    out, prov = [], {}
    for m in methods:
        if isinstance(m, dict) and ("maps" in m or m.get("kind") == "affine"):
            name = m.get("name")
            if not name:
                raise ValueError(f"method {m!r} has no 'name'")
            extra = set(m) - {"name", "maps", "kind"}
            if extra:
                raise ValueError(f"method {name!r}: an affine method takes name and maps only, not {sorted(extra)}")
            maps = m.get("maps")
            if isinstance(maps, (str, os.PathLike)):
                maps = AffineMaps.load(maps)
            if not isinstance(maps, AffineMaps):
                raise ValueError(f"method {name!r}: maps must be an ss.AffineMaps (from model.fit_affine) "
                                 f"or the folder it was saved to, got {type(maps).__name__}")
            maps.check_model(config, layers, what=f"method {name!r}")
            out.append({"name": name, "kind": "affine",
                        "maps": maps.wire(range(int(config["n_layer"])) if layers is None else layers)})
            prov[name] = {k: maps.meta.get(k) for k in ("n_docs", "seed", "prepend_bos", "model")}
        else:
            out.append(m)
    return out, prov
