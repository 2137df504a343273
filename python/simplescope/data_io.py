"""Corpus reading through the Go core's data package (JSONL or JSONL.zst in the Pile's format).

    texts = ss.read_corpus("val.jsonl.zst", preset="seed")

A preset (docs/design.md §1) fixes which documents are kept and how they are evaluated:
``seed`` (first 2000 documents, < 200 words and < 1600 characters; BOS, notebook positions,
seed 42) and ``paper`` (first 200 000, < 250 words and < 2000 characters, shuffled with seed 42,
documents 10 000 … 11 999; no BOS, paper positions).
"""
from __future__ import annotations

import os

from . import _native


def load_corpus(path, preset: str | None = None, max_docs: int = 0) -> tuple[list[str], dict | None]:
    """Like :func:`read_corpus`, and also the preset's evaluation settings as the core reports
    them ({"name", "prepend_bos", "positions", "seed"}; None without a preset)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"corpus path must be a string or path, got {type(path).__name__}")
    path = os.fspath(path)
    if preset is not None and not isinstance(preset, str):
        raise TypeError(f"preset must be a name such as 'seed' or 'paper', or None; got {type(preset).__name__}")
    max_docs = int(max_docs or 0)
    if max_docs < 0:
        raise ValueError(f"max_docs must be >= 0 (0 = all), got {max_docs}")
    req = {"path": path, "max_docs": max_docs}
    if preset:
        req["preset"] = preset
    out = _native.lib().call(None, "load_data", req)
    texts = list(out["texts"])
    if max_docs:
        texts = texts[:max_docs]  # the core applies max_docs only without a preset
    return texts, out.get("preset")


def read_corpus(path, preset: str | None = None, max_docs: int = 0) -> list[str]:
    """The document texts of a JSONL / JSONL.zst corpus (a JSON object with a "text" field on
    each line), in file order, or as a preset ("seed" or "paper") selects them.  ``max_docs`` > 0
    keeps the first ``max_docs`` (after the preset's selection).  Bad files and unknown presets
    raise InputError (a ValueError) naming them; a missing file FileNotFoundError."""
    return load_corpus(path, preset, max_docs)[0]
