"""Entity description (Patchscopes §4.3): what does the hidden state of an entity's last token
say about the entity, layer by layer?

The hidden state of each entity's last token (the entity's name alone is the source prompt, no
BOS) at layer ℓ replaces the output of layer ℓ (or of ``target_layer``) at the placeholder of the
paper's few-shot target

    Syria: Country in the Middle East, Leonardo DiCaprio: American actor, Samsung: South Korean
    multinational major appliance and consumer electronics corporation, x

and the model continues greedily for up to ``max_new_tokens`` (20, as the paper's text says). The
description is the continuation up to its first ``separator`` (", ", the separator of the few-shot
entries; generation stops there), stripped. Where reference descriptions are given, each
description is scored with RougeL (the F-measure of Google's ``rouge-score`` package, Porter
stemming on) against its reference.

The paper's notebook (entity_processing.ipynb) generates 50 tokens and keeps them all; pass
``max_new_tokens=50, separator=None`` to do the same.
"""
from __future__ import annotations

import os

import numpy as np

from ._common import (Run, check_layers, check_positive, default_layers, generate_pairs, model_settings,
                      need_tokenizer, on_gpu, progress_bar)
from ._store import TaskResult, register

DESCRIBE_PROMPT = ("Syria: Country in the Middle East, Leonardo DiCaprio: American actor, Samsung: South Korean "
                   "multinational major appliance and consumer electronics corporation, x")
PLACEHOLDER = "x"
SEPARATOR = ","
MAX_NEW_TOKENS = 20
ENTITIES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "patchscopes",
                             "entities.tsv")


def rouge_l(references, predictions, use_stemmer: bool = True) -> np.ndarray:
    """RougeL F-measure of each prediction against its reference (rouge-score's RougeScorer)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ImportError("RougeL needs the rouge-score package: pip install rouge-score") from None
    refs, preds = list(references), list(predictions)
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references for {len(preds)} predictions")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
    return np.array([scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(refs, preds)], dtype=np.float64)


def cut(generation: str, separator: str | None) -> str:
    """The description in a generation: up to the first separator, stripped."""
    if separator:
        generation = generation.split(separator, 1)[0]
    return generation.strip()


def placeholder_position(model, prompt_tokens, placeholder: str, prompt: str) -> int:
    """The last token of the prompt that is the placeholder (spaces aside)."""
    for i in range(len(prompt_tokens) - 1, -1, -1):
        if model.to_string([prompt_tokens[i]]).strip() == placeholder:
            return i
    raise ValueError(f"prompt {prompt!r} has no token {placeholder!r} (the placeholder)")


def read_entities(path: str) -> tuple[list[str], list[str] | None]:
    """Entities (and references) from a .txt (one entity a line) or a .tsv with a column `entity`
    and optionally `description`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"entities file {path} does not exist")
    if path.endswith(".tsv"):
        import pandas as pd
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
        if "entity" not in df.columns:
            raise ValueError(f"entities file {path} lacks the column entity (has: {', '.join(df.columns)})")
        refs = list(df["description"]) if "description" in df.columns else None
        return list(df["entity"]), refs
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()], None


def _references(entities: list[str], references):
    if references is None:
        return None
    if isinstance(references, dict):
        missing = [e for e in entities if e not in references]
        if missing:
            raise ValueError(f"references: no description for entity {missing[0]!r}")
        refs = [references[e] for e in entities]
    else:
        refs = list(references)
        if len(refs) != len(entities):
            raise ValueError(f"references: {len(refs)} descriptions for {len(entities)} entities")
    for i, r in enumerate(refs):
        if not isinstance(r, str):
            raise ValueError(f"references row {i}: {type(r).__name__}, not a string")
    return refs


@register("describe")
class DescribeResult(TaskResult):
    """``df``: one row per (entity, layer) with columns sample, entity, reference (when given),
    layer_source, layer_target, generation, description and rougeL (NaN without references)."""

    def summary(self):
        """Mean RougeL per layer pair and the number of entities and of empty descriptions."""
        import pandas as pd
        if not len(self.df):
            return pd.DataFrame(columns=["layer_source", "layer_target", "rougeL", "n", "n_empty"])
        g = self.df.groupby(["layer_source", "layer_target"])
        return pd.DataFrame({"rougeL": g["rougeL"].mean(), "n": g.size(),
                             "n_empty": g["description"].apply(lambda s: int((s == "").sum()))}).reset_index()

    def rouge_by_layer(self):
        s = self.summary()
        return s["layer_source"].to_numpy(), s["rougeL"].to_numpy()

    def plot(self, path=None, ax=None, title=None):
        """Mean RougeL by (source) layer."""
        from .plots import by_layer
        if "reference" not in self.df.columns:
            raise ValueError("no references were given, so there is no RougeL to plot")
        x, y = self.rouge_by_layer()
        t = title or f"entity description: RougeL by layer ({self.meta.get('n_entities', '?')} entities)"
        top = max(0.1, 1.1 * float(np.nanmax(y))) if len(y) and np.isfinite(y).any() else 1.0
        return by_layer(x, {"RougeL": y}, "RougeL (F)", t, path=path, ax=ax, ylim=(0.0, min(1.0, top)))

    def figures(self):
        return [("rougeL.png", lambda p: self.plot(path=p))] if "reference" in self.df.columns else []


def describe(model, entities, layers=None, references=None, *, target_layer=None,
             max_new_tokens: int = MAX_NEW_TOKENS, separator: str | None = SEPARATOR, prompt: str = DESCRIBE_PROMPT,
             placeholder: str = PLACEHOLDER, use_stemmer: bool = True, out=None, progress: bool = True,
             unit_rows: int | None = None) -> DescribeResult:
    """Describes each entity from its hidden state at each layer (module docstring).

    entities: names (texts). layers: source layers (default 0 … n_layer - 2); the target layer is
    the same layer unless ``target_layer`` fixes one. references: a description per entity (a
    list, or a dict entity -> description) to score with RougeL. out: a folder written as the run
    goes (resumable per layer)."""
    need_tokenizer(model, "describe")
    if isinstance(entities, str):
        entities = [entities]
    entities = list(entities)
    if not entities:
        raise ValueError("entities: none given (empty list)")
    for i, e in enumerate(entities):
        if not isinstance(e, str) or not e.strip():
            raise ValueError(f"entities row {i}: {e!r} is not a non-empty text")
    refs = _references(entities, references)
    n_layer = model.n_layers
    L = check_layers(layers, n_layer, default_layers(n_layer), "layers")
    if target_layer is not None:
        target_layer = check_layers(target_layer, n_layer, [], "target_layer")[0]
    max_new_tokens = check_positive(max_new_tokens, "max_new_tokens", 4096)
    if separator is not None and (not isinstance(separator, str) or not separator):
        raise ValueError(f"separator must be a non-empty string or None, got {separator!r}")
    if refs is not None:
        rouge_l(["a"], ["a"])  # the package is there before any work
    tgt = model.to_tokens(prompt)
    pos = placeholder_position(model, tgt, placeholder, prompt)
    n_ctx = int(model.config.get("n_positions", 2048))
    if len(tgt) + max_new_tokens > n_ctx:
        raise ValueError(f"the prompt's {len(tgt)} tokens + max_new_tokens {max_new_tokens} exceed the context of {n_ctx}")
    src = model.to_tokens(entities)
    for i, t in enumerate(src):
        if len(t) > n_ctx:
            raise ValueError(f"entities row {i}: {len(t)} tokens exceed the model's context of {n_ctx}")
    pairs = [(l, l if target_layer is None else target_layer) for l in L]
    settings = {"entities": entities, "references": refs, "prompt": prompt, "placeholder": placeholder,
                "separator": separator, "max_new_tokens": max_new_tokens, "use_stemmer": bool(use_stemmer),
                "model": model_settings(model)}
    meta = {"n_entities": len(entities), "layers": L, "target_layer": target_layer, "prompt": prompt,
            "placeholder_position": pos, "separator": separator, "max_new_tokens": max_new_tokens,
            "model": model.path}
    run = Run(out, "describe", settings, ("layer_source", "layer_target"))
    todo = [p for p in pairs if p not in run.done]
    run.start(meta)
    n = len(entities)

    def on_unit(unit_pairs, gen):
        import pandas as pd
        k = len(unit_pairs)
        frame = {"sample": np.tile(np.arange(n, dtype=np.int64), k), "entity": entities * k}
        if refs is not None:
            frame["reference"] = refs * k
        frame["layer_source"] = np.repeat([p[0] for p in unit_pairs], n).astype(np.int64)
        frame["layer_target"] = np.repeat([p[1] for p in unit_pairs], n).astype(np.int64)
        frame["generation"] = list(gen.texts)
        frame["description"] = [cut(g, separator) for g in gen.texts]
        frame["rougeL"] = (rouge_l(frame["reference"], frame["description"], use_stemmer) if refs is not None
                           else np.full(n * k, np.nan))
        run.add(pd.DataFrame(frame))

    if todo:
        bar = progress_bar(len(pairs), len(pairs) - len(todo), "describe", progress, unit="layer")
        try:
            generate_pairs(model, todo, src, [-1] * n, [tgt] * n, [pos] * n, max_new_tokens=max_new_tokens,
                           stop=separator, unit_rows=unit_rows or (16384 if on_gpu(model) else 2048),
                           on_unit=on_unit, bar=bar)
        finally:
            if bar is not None:
                bar.close()
    return run.finish(DescribeResult, meta)
