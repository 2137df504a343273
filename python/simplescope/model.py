"""The notebook API: ss.load(...) -> Model."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterable, Sequence

import numpy as np

from . import _calls, _native, affine, patching
from .methods import DEFAULT_METHODS, method_specs
from .results import Results


class Model:
    """A GPT-J loaded by the Go core. Methods are safe to call from several threads."""

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32"):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"model path must be a string or path, got {type(path).__name__}")
        path = os.path.expanduser(os.fspath(path))
        self._lib = _native.lib()
        self._h = self._lib.load(path, device, dtype)
        self._lock = threading.Condition()
        self._active = 0  # calls in flight; close() waits for them
        self.path = path
        self.config = self._lib.call(self._h, "config")

    # lifecycle -----------------------------------------------------------------------------
    def close(self):
        """Frees the model's memory now (otherwise when the object is collected). Calls still
        running in other threads finish first; later calls raise "the model is closed"."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            h, self._h = getattr(self, "_h", None), None
            lock.wait_for(lambda: self._active == 0)
        if h:
            self._lib.free(h)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        c = self.config
        return (f"simplescope.Model({self.path!r}, n_layer={c['n_layer']}, n_embd={c['n_embd']}, "
                f"device={c['device']!r}, dtype={c['dtype']!r})")

    def _handle(self):
        if not self._h:
            raise RuntimeError("the model is closed")
        return self._h

    @contextlib.contextmanager
    def _using(self):
        """Holds the native handle for one call: close() waits until the call is over."""
        with self._lock:
            if not self._h:
                raise RuntimeError("the model is closed")
            self._active += 1
            h = self._h
        try:
            yield h
        finally:
            with self._lock:
                self._active -= 1
                self._lock.notify_all()

    def _call(self, method, req=None):
        with self._using() as h:
            return self._lib.call(h, method, req)

    @property
    def n_layers(self) -> int:
        return int(self.config["n_layer"])

    # tokens --------------------------------------------------------------------------------
    # The public names are TransformerLens's (to_tokens, to_string, to_str_tokens); simplescope's
    # own names tokenize and decode are aliases of the same functions.  Unlike TransformerLens,
    # to_tokens returns lists and adds BOS only when asked (prepend_bos=False by default).
    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool = False):
        """Token ids of a text (list[int]) or of each text in a list (list[list[int]]).

        TransformerLens's name; ``tokenize`` is an alias.  BOS is prepended only with
        ``prepend_bos=True`` and the result is a list, not a tensor."""
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, not str")
        ids = self._call("tokenize", {"texts": texts, "prepend_bos": bool(prepend_bos)})["ids"]
        return ids[0] if single else ids

    def to_string(self, ids) -> str:
        """The text of a token id sequence (any array-like; it is flattened).

        TransformerLens's name; ``decode`` is an alias."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._call("decode", {"ids": [ids]})["texts"][0]

    def to_str_tokens(self, ids) -> list[str]:
        """The display string of each token id (TransformerLens's name; it takes ids here)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._call("token_strings", {"ids": ids})["tokens"]

    #: simplescope's name for :meth:`to_tokens` (the same function).
    tokenize = to_tokens
    #: simplescope's name for :meth:`to_string` (the same function).
    decode = to_string

    def _as_token_lists(self, tokens) -> list[list[int]]:
        if isinstance(tokens, str):
            raise TypeError("run_with_cache takes token ids; use model.tokenize(text) first")
        try:
            import torch
            if isinstance(tokens, torch.Tensor):
                tokens = tokens.detach().cpu().numpy()
        except ImportError:
            pass
        if isinstance(tokens, np.ndarray):
            if tokens.ndim == 1:
                return [tokens.astype(np.int64).tolist()]
            if tokens.ndim == 2:
                return tokens.astype(np.int64).tolist()
            raise ValueError(f"tokens must be 1-D or 2-D, got shape {tokens.shape}")
        tokens = list(tokens)
        if tokens and all(isinstance(t, (int, np.integer)) for t in tokens):
            return [[int(t) for t in tokens]]
        return [[int(t) for t in seq] for seq in tokens]

    # forward -------------------------------------------------------------------------------
    def run_with_cache(self, tokens, names_filter: Iterable[str] | None = None, return_type: str = "torch",
                       *, names: Iterable[str] | None = None):
        """Runs the model and returns (logits, cache) like TransformerLens.

        tokens: a list of ids, a list of lists (right-padded internally), a [batch, pos] array or
        tensor. logits: [batch, pos, vocab] float32; cache[name]: [batch, pos, d_model] for
        "hook_embed" and "blocks.{l}.hook_resid_post" (all of them unless `names_filter`, a list
        of those names, limits it; ``names`` is simplescope's alias of that keyword).
        Positions past a sequence's length are padding. return_type "torch" or "numpy".
        """
        names_filter = _alias_keyword("names_filter", names_filter, "names", names)
        req = {"tokens": self._as_token_lists(tokens)}
        if names_filter is not None:
            req["names"] = list(names_filter)
        out = self._call("run_with_cache", req)
        logits = _native.array(out["logits"])
        cache = {k: _native.array(v) for k, v in out["cache"].items()}
        if return_type == "torch":
            import torch
            logits = torch.from_numpy(logits.copy())
            cache = {k: torch.from_numpy(v.copy()) for k, v in cache.items()}
        elif return_type != "numpy":
            raise ValueError(f"return_type {return_type!r} (want 'torch' or 'numpy')")
        return logits, Cache(cache)

    # evaluation ----------------------------------------------------------------------------
    def evaluate(self, prompts, methods=DEFAULT_METHODS, positions="random", seed: int = 42,
                 prepend_bos: bool = True, layers=None, progress: bool = True, truncate: bool = True,
                 batch_tokens: int = 0, patch_rows: int = 0, chunk_prompts: int = 0) -> Results:
        """Evaluates each method at each layer on each prompt (docs/design.md §1).

        prompts: list of texts, or list of token-id lists (BOS is added when prepend_bos).
        methods: built-in names ("logitlens", "patchscope", "simplescope") and/or dicts
          {"name", "target": text, "placeholder": text (default "?") or token index,
           "target_layer": "same" | "last" | "all" | int}, or the affine baseline
          {"name", "maps": ss.AffineMaps or its saved folder} (see fit_affine).
        positions: "random" (seeded randint(0, len-1) per prompt, layer and method), "last",
          an int array [n_prompts] or [n_prompts, n_layers] (positions count BOS when present).
        layers: source layers (default all). truncate: cut prompts longer than the model's
          context to it (False: raise). progress: a tqdm bar. Ctrl-C stops the run promptly and
          leaves the model usable.
        """
        methods, affine_meta = affine.resolve_methods(methods, self.config, layers)
        req = _evaluate_request(prompts, methods, positions, seed, prepend_bos, layers, truncate,
                                batch_tokens, patch_rows, chunk_prompts)
        out = self._run("evaluate", req, progress)
        res = _results_from(out, self, prepend_bos, seed, positions)
        for name, prov in affine_meta.items():
            res.meta["methods"][name]["affine"] = prov
        return res

    def fit_affine(self, texts, layers=None, n_docs: int | None = None, seed: int = 0,
                   prepend_bos: bool = True, batch_docs: int = 32, progress: bool = True) -> "affine.AffineMaps":
        """The Patchscopes paper's affine-mapping baseline (§4.1): per layer ℓ (default all), the
        least-squares map h_ℓ·W_ℓ + b_ℓ ≈ h_{L-1} (the last block's output, before ln_f) over one
        random position (numpy default_rng(seed)) of each of the first n_docs documents (default
        all; n_docs must exceed n_embd). Streams the documents through hidden_states in batches of
        batch_docs. Returns ss.AffineMaps (fit residual per layer: .mse, .r2, .table(); .save /
        AffineMaps.load); evaluate scores it with methods=[{"name": "affine", "maps": maps}]."""
        return affine.fit_affine(self, texts, layers=layers, n_docs=n_docs, seed=seed,
                                 prepend_bos=prepend_bos, batch_docs=batch_docs, progress=progress)

    def _run(self, method: str, req: dict, progress: bool) -> dict:
        """A long native call (cancellable with Ctrl-C), with a progress bar when asked."""
        bar, on_progress = _progress_bar() if progress else (None, None)
        try:
            with self._using() as h:
                return self._lib.run(h, method, req, on_progress)
        finally:
            if bar is not None:
                bar.close()

    def inspect(self, prompt, k: int = 5, methods=DEFAULT_METHODS, position: int | None = None,
                prepend_bos: bool = True, layers=None):
        """The top-k decoded tokens per layer per method for one prompt, as a DataFrame with
        columns layer, method, rank, token_id, token, prob (plus the model's own prediction as
        method "source" at layer = n_layer)."""
        import pandas as pd
        methods, _ = affine.resolve_methods(methods, self.config, layers)
        out = self._call("inspect", _inspect_request(prompt, k, methods, position, prepend_bos, layers))
        names = self._token_names(_inspect_ids(out))
        df = pd.DataFrame(_inspect_rows(out, names, self.n_layers),
                          columns=["layer", "method", "rank", "token_id", "token", "prob"])
        df.attrs["position"] = out["position"]
        return df

    def _token_names(self, ids: list[int]) -> dict[int, str]:
        """Each id's display string (its number when the model has no tokenizer)."""
        if self.config.get("has_tokenizer"):
            return dict(zip(ids, self.to_str_tokens(ids)))
        return {i: str(i) for i in ids}

    # patching and generation (python/simplescope/patching.py) ------------------------------
    def hidden_states(self, prompts, layer, position=-1, *, prepend_bos: bool = False):
        """torch [n, d_model]: the output of block `layer` (resid_post; before ln_f for the last
        block) of each prompt at `position` (negative counts from the end)."""
        return patching.hidden_states(self, prompts, layer, position, prepend_bos=prepend_bos)

    def patch(self, targets, vectors, layer, position=-1, *, site="resid_post", transform=None,
              prepend_bos=False, progress=True) -> "patching.PatchOutput":
        """Writes vectors into the targets' residual stream and returns the next-token logits
        at each target's last position (see simplescope.patching)."""
        return patching.patch(self, targets, vectors, layer, position, site=site, transform=transform,
                              prepend_bos=prepend_bos, progress=progress)

    def generate(self, targets, vectors=None, layer=None, position=-1, *, max_new_tokens=20,
                 do_sample=False, temperature=1.0, top_k=None, top_p=None, seed=None, stop=None,
                 site="resid_post", transform=None, prepend_bos=False, progress=True) -> "patching.GenerateOutput":
        """Generates after each target, the patch (if any) applied in the prompt pass only
        (see simplescope.patching)."""
        return patching.generate(self, targets, vectors, layer, position, max_new_tokens=max_new_tokens,
                                 do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                 seed=seed, stop=stop, site=site, transform=transform,
                                 prepend_bos=prepend_bos, progress=progress)

    def _call_tensors(self, method, req, progress=False):
        """Runs a method whose request and result hold tensors (see _calls)."""
        return _calls.call_with_tensors(self, method, req, progress)

    def live_tensors(self) -> int:
        """Tensors alive in the process (a leak check)."""
        return self._lib.live_tensors()


class Cache(dict):
    """Activations keyed by TransformerLens names (blocks.{l}.hook_resid_post, hook_embed)."""

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except KeyError:
            raise KeyError(f"{key!r} not in cache; known: {', '.join(sorted(self))}") from None


# ------------------------------------------------------------------------------ requests

def _evaluate_request(prompts, methods, positions, seed, prepend_bos, layers, truncate,
                      batch_tokens, patch_rows, chunk_prompts) -> dict:
    """The engine's evaluate request from evaluate's arguments (checked before anything runs)."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of texts or token lists, not a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given (empty list)")
    specs = method_specs(methods)
    if not specs:
        raise ValueError("no methods given")
    req = {"prepend_bos": bool(prepend_bos), "methods": specs, "seed": int(seed),
           "truncate": bool(truncate), "batch_tokens": int(batch_tokens),
           "patch_rows": int(patch_rows), "chunk_prompts": int(chunk_prompts)}
    req.update(_prompts_field(prompts))
    if layers is not None:
        req["layers"] = [int(l) for l in np.atleast_1d(np.asarray(layers))]
    req["positions"] = _positions_field(positions)
    return req


def _prompts_field(prompts: list) -> dict:
    """{"texts": [...]} or {"tokens": [[...], ...]}; a mix of the two is refused."""
    if all(isinstance(p, str) for p in prompts):
        return {"texts": prompts}
    if all(not isinstance(p, str) for p in prompts):
        return {"tokens": [[int(t) for t in np.asarray(p).reshape(-1)] for p in prompts]}
    raise TypeError("prompts mix texts and token lists")


def _positions_field(positions):
    """The positions field: the name "random" or "last", or an int64 array (whole floats accepted)."""
    if isinstance(positions, str):
        if positions not in ("random", "last"):
            raise ValueError(f"positions {positions!r} (want 'random', 'last' or an array)")
        return positions
    arr = np.asarray(positions)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"positions must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _progress_bar():
    """A tqdm bar and the progress callback that moves it."""
    from tqdm.auto import tqdm

    bar = tqdm(total=0, unit="item", desc="simplescope", leave=False)

    def on_progress(done, total):
        if total and bar.total != total:
            bar.total = total
            bar.refresh()
        if done > bar.n:
            bar.update(done - bar.n)

    return bar, on_progress


def _inspect_request(prompt, k, methods, position, prepend_bos, layers) -> dict:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    req = {"methods": method_specs(methods), "k": int(k), "prepend_bos": bool(prepend_bos)}
    if isinstance(prompt, str):
        req["text"] = prompt
    else:
        req["tokens"] = [int(t) for t in prompt]
    if position is not None:
        req["position"] = int(position)
    if layers is not None:
        req["layers"] = [int(l) for l in layers]
    return req


def _inspect_ids(out: dict) -> list[int]:
    """Every token id an inspect answer names, sorted."""
    ids = set(out["source"]["ids"])
    for per in out["methods"].values():
        for t in per:
            ids.update(t["ids"])
    return sorted(ids)


def _inspect_rows(out: dict, names: dict, n_layers: int) -> list[tuple]:
    """(layer, method, rank, token_id, token, prob) rows: each method's top-k per layer, then the
    model's own prediction as method "source" at layer n_layers."""
    rows = []
    for mname, per in out["methods"].items():
        for layer, t in zip(out["layers"], per):
            for rank, (i, lp) in enumerate(zip(t["ids"], t["logprobs"])):
                rows.append((layer, mname, rank, i, names[i], float(np.exp(lp))))
    for rank, (i, lp) in enumerate(zip(out["source"]["ids"], out["source"]["logprobs"])):
        rows.append((n_layers, "source", rank, i, names[i], float(np.exp(lp))))
    return rows


def _alias_keyword(name: str, value, alias: str, alias_value):
    """The value of a keyword given under its name or its alias (not both)."""
    if alias_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {name} or its alias {alias}, not both")
    return alias_value


def _results_from(out: dict, model: Model | None, prepend_bos, seed, positions) -> Results:
    methods, data, target_layers, defs = [], {}, {}, {}
    for m in out["methods"]:
        name = m["name"]
        methods.append(name)
        data[name] = {k: _native.array(v) for k, v in m["arrays"].items()}
        target_layers[name] = m.get("target_layers")
        defs[name] = {k: v for k, v in m.items() if k not in ("arrays", "target_layers")}
    meta = {
        "model": model.path if model else None,
        "config": dict(model.config) if model else None,
        "prepend_bos": prepend_bos, "seed": seed,
        "positions": positions if isinstance(positions, str) else "given",
        "methods": defs, "stats": out["stats"], "n_truncated": out["n_truncated"],
        "prompt_lengths": _native.array(out["prompt_lengths"]).tolist(),
    }
    return Results(methods=methods, layers=list(out["layers"]), data=data, meta=meta,
                   target_layers={k: v for k, v in target_layers.items() if v})


def load(path, device: str = "cpu", dtype: str = "float32") -> Model:
    """Loads a GPT-J from a HF model folder (config.json + safetensors or pytorch_model.bin,
    single or sharded) or a HF cache folder (models--EleutherAI--gpt-j-6b or one of its
    snapshots/<rev>). device: "cpu", "cuda", "cuda:N"; dtype: "float32", "float16", "bfloat16"."""
    return Model(path, device=device, dtype=dtype)
