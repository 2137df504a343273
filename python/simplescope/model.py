"""The notebook API: ss.load(...) -> Model."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterable, Sequence

import numpy as np

import torch

from . import _native, _tensors
from .results import Results

BUILTIN_METHODS = ("logitlens", "patchscope", "simplescope")
DEFAULT_METHODS = BUILTIN_METHODS


def _method_spec(m) -> dict:
    """A method is a built-in name or a dict {name, target, placeholder, target_layer}."""
    if isinstance(m, str):
        return {"name": m}
    if isinstance(m, dict):
        if "name" not in m:
            raise ValueError(f"method {m!r} has no 'name'")
        spec = dict(m)
        tl = spec.get("target_layer")
        if tl is not None and not isinstance(tl, (str, int, np.integer)):
            raise ValueError(f"method {spec['name']!r}: target_layer must be 'same', 'last', 'all' or an int, got {tl!r}")
        return spec
    raise TypeError(f"a method is a name or a dict, got {type(m).__name__}")


class Model:
    """A GPT-J loaded by the Go core. Methods are safe to call from several threads."""

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32"):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"model path must be a string or path, got {type(path).__name__}")
        path = os.path.expanduser(os.fspath(path))
        lib = _native.lib()
        self._adopt(lib, lib.load(path, device, dtype), path)

    def _adopt(self, lib, h, path):
        """Takes ownership of a native model handle (ss_model_load, ss_model_from_tensors)."""
        self._lib = lib
        self._h = h
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
    def tokenize(self, text: str | Sequence[str], prepend_bos: bool = False):
        """Token ids of a text (list[int]) or of each text in a list (list[list[int]])."""
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is {type(t).__name__}, not str")
        ids = self._call("tokenize", {"texts": texts, "prepend_bos": bool(prepend_bos)})["ids"]
        return ids[0] if single else ids

    def decode(self, ids) -> str:
        """The text of a token id sequence."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._call("decode", {"ids": [ids]})["texts"][0]

    def to_str_tokens(self, ids) -> list[str]:
        """The display string of each token id."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._call("token_strings", {"ids": ids})["tokens"]

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
    def run_with_cache(self, tokens, names_filter=None, return_type: str = "torch", *, names=None):
        """Runs the model and returns (logits, cache) like TransformerLens.

        tokens: a list of ids, a list of lists (ragged: right-padded internally), or an integer
        [batch, pos] / [pos] tensor or array (any device; passed without a copy). names_filter:
        None (every site), a site name, a list of names, or a function name -> bool (`names` is
        an alias). Returns logits [batch, pos, vocab] float32 and cache[name] [batch, pos,
        d_model] in the model's dtype, for "hook_embed" and "blocks.{l}.hook_resid_post", as
        torch tensors on the model's device that share the core's memory (no copy; they stay
        valid after close()). Positions past a sequence's length are padding. return_type
        "numpy" gives numpy arrays (bfloat16 as float32).
        """
        if return_type not in ("torch", "numpy"):
            raise ValueError(f"return_type {return_type!r} (want 'torch' or 'numpy')")
        if names is not None:
            if names_filter is not None:
                raise TypeError("give names_filter or its alias names, not both")
            names_filter = names
        req = {}
        sites = self._cache_sites(names_filter)
        if sites is not None:
            req["names"] = sites
        with _tensors.TensorArgs() as args:
            if _tensors.is_tensor(tokens):
                req["tokens"] = args.arg(tokens, "tokens")
            else:
                req["tokens"] = self._as_token_lists(tokens)
            out = self._call("run_with_cache", req)
        out = _tensors.decode_tensors(out)
        logits, cache = out["logits"], dict(out["cache"])
        if return_type == "numpy":
            logits = _numpy(logits)
            cache = {k: _numpy(v) for k, v in cache.items()}
        return logits, Cache(cache)

    def _cache_sites(self, names_filter):
        """The site names a names_filter selects (None = all, without listing them)."""
        if names_filter is None:
            return None
        if isinstance(names_filter, str):
            return [names_filter]
        if callable(names_filter):
            every = ["hook_embed"] + [f"blocks.{l}.hook_resid_post" for l in range(self.n_layers)]
            return [n for n in every if names_filter(n)]
        return [str(n) for n in names_filter]

    # evaluation ----------------------------------------------------------------------------
    def evaluate(self, prompts, methods=DEFAULT_METHODS, positions="random", seed: int = 42,
                 prepend_bos: bool = True, layers=None, progress: bool = True, truncate: bool = True,
                 batch_tokens: int = 0, patch_rows: int = 0, chunk_prompts: int = 0) -> Results:
        """Evaluates each method at each layer on each prompt (docs/design.md §1).

        prompts: list of texts, or list of token-id lists (BOS is added when prepend_bos).
        methods: built-in names ("logitlens", "patchscope", "simplescope") and/or dicts
          {"name", "target": text, "placeholder": text (default "?") or token index,
           "target_layer": "same" | "last" | "all" | int}.
        positions: "random" (seeded randint(0, len-1) per prompt, layer and method), "last",
          an int array [n_prompts] or [n_prompts, n_layers] (positions count BOS when present).
        layers: source layers (default all). truncate: cut prompts longer than the model's
          context to it (False: raise). progress: a tqdm bar. Ctrl-C stops the run promptly and
          leaves the model usable.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of texts or token lists, not a single string")
        prompts = list(prompts)
        if not prompts:
            raise ValueError("no prompts given (empty list)")
        if isinstance(methods, (str, dict)):
            methods = [methods]
        specs = [_method_spec(m) for m in methods]
        if not specs:
            raise ValueError("no methods given")
        req = {"prepend_bos": bool(prepend_bos), "methods": specs, "seed": int(seed),
               "truncate": bool(truncate), "batch_tokens": int(batch_tokens),
               "patch_rows": int(patch_rows), "chunk_prompts": int(chunk_prompts)}
        if all(isinstance(p, str) for p in prompts):
            req["texts"] = prompts
        elif all(not isinstance(p, str) for p in prompts):
            req["tokens"] = [[int(t) for t in np.asarray(p).reshape(-1)] for p in prompts]
        else:
            raise TypeError("prompts mix texts and token lists")
        if layers is not None:
            layers = [int(l) for l in np.atleast_1d(np.asarray(layers))]
            req["layers"] = layers
        if isinstance(positions, str):
            if positions not in ("random", "last"):
                raise ValueError(f"positions {positions!r} (want 'random', 'last' or an array)")
            req["positions"] = positions
        else:
            arr = np.asarray(positions)
            if arr.dtype.kind not in "iu":
                if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
                    arr = arr.astype(np.int64)
                else:
                    raise ValueError(f"positions must be integers, got dtype {arr.dtype}")
            req["positions"] = arr.astype(np.int64)
        bar = None
        on_progress = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=0, unit="item", desc="simplescope", leave=False)

            def on_progress(done, total):
                if total and bar.total != total:
                    bar.total = total
                    bar.refresh()
                if done > bar.n:
                    bar.update(done - bar.n)
        try:
            with self._using() as h:
                out = self._lib.run(h, "evaluate", req, on_progress)
        finally:
            if bar is not None:
                bar.close()
        return _results_from(out, self, prepend_bos, seed, positions)

    def inspect(self, prompt, k: int = 5, methods=DEFAULT_METHODS, position: int | None = None,
                prepend_bos: bool = True, layers=None):
        """The top-k decoded tokens per layer per method for one prompt, as a DataFrame with
        columns layer, method, rank, token_id, token, prob (plus the model's own prediction as
        method "source" at layer = n_layer)."""
        import pandas as pd
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if isinstance(methods, (str, dict)):
            methods = [methods]
        req = {"methods": [_method_spec(m) for m in methods], "k": int(k), "prepend_bos": bool(prepend_bos)}
        if isinstance(prompt, str):
            req["text"] = prompt
        else:
            req["tokens"] = [int(t) for t in prompt]
        if position is not None:
            req["position"] = int(position)
        if layers is not None:
            req["layers"] = [int(l) for l in layers]
        out = self._call("inspect", req)
        ids = set(out["source"]["ids"])
        for per in out["methods"].values():
            for t in per:
                ids.update(t["ids"])
        ids = sorted(ids)
        names = dict(zip(ids, self.to_str_tokens(ids))) if self.config.get("has_tokenizer") else {i: str(i) for i in ids}
        rows = []
        for mname, per in out["methods"].items():
            for layer, t in zip(out["layers"], per):
                for rank, (i, lp) in enumerate(zip(t["ids"], t["logprobs"])):
                    rows.append((layer, mname, rank, i, names[i], float(np.exp(lp))))
        for rank, (i, lp) in enumerate(zip(out["source"]["ids"], out["source"]["logprobs"])):
            rows.append((self.n_layers, "source", rank, i, names[i], float(np.exp(lp))))
        df = pd.DataFrame(rows, columns=["layer", "method", "rank", "token_id", "token", "prob"])
        df.attrs["position"] = out["position"]
        return df

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


def _numpy(t):
    """A result tensor as a numpy array (no copy for CPU tensors numpy has a dtype for)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.cpu().numpy()


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
