"""ss.load, model.config, to_tokens / to_string / to_str_tokens (TransformerLens's names; tokenize and
decode are aliases) and run_with_cache against independent
references: HF `tokenizers` on the same tokenizer.json and HF transformers' GPTJForCausalLM
(logits, and hooks on transformer.wte / transformer.h[l] for hook_embed / every resid_post)."""
import inspect
import json
import os

import numpy as np
import pytest
import torch

import simplescope as ss
from helpers import assert_close

TOL_F32 = 1e-4


def hf_forward(hf_model, ids, attention_mask=None, position_ids=None):
    """HF logits (B, T, V) and the residuals TransformerLens names, via forward hooks."""
    sites = {}
    hooks = [hf_model.transformer.wte.register_forward_hook(
        lambda mod, inp, out: sites.__setitem__("hook_embed", out.detach()))]
    for l, block in enumerate(hf_model.transformer.h):
        hooks.append(block.register_forward_hook(
            lambda mod, inp, out, l=l: sites.__setitem__(f"blocks.{l}.hook_resid_post",
                                                         (out[0] if isinstance(out, tuple) else out).detach())))
    try:
        with torch.no_grad():
            out = hf_model(input_ids=torch.as_tensor(ids), attention_mask=attention_mask,
                           position_ids=position_ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return out.logits.float().numpy(), {k: v.float().numpy() for k, v in sites.items()}


# ------------------------------------------------------------------------------ load / config

def test_config_matches_config_json(model, tiny_dir):
    with open(os.path.join(tiny_dir, "config.json")) as f:
        want = json.load(f)
    c = model.config
    for key in ("n_embd", "n_layer", "n_head", "rotary_dim", "vocab_size", "n_positions", "bos_token_id"):
        assert c[key] == want[key], f"config[{key!r}] = {c[key]!r}, config.json has {want[key]!r}"
    assert c["device"] == "cpu" and c["dtype"] == "float32" and c["has_tokenizer"] is True
    assert model.n_layers == want["n_layer"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_load_dtypes(tiny_dir, hf_model, dtype):
    ids = [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]
    want, _ = hf_forward(hf_model, [ids])
    with ss.load(tiny_dir, device="cpu", dtype=dtype) as m:
        assert m.config["dtype"] == dtype
        logits, cache = m.run_with_cache(ids)
    assert logits.dtype == torch.float32 and tuple(logits.shape) == (1, len(ids), 50400)
    if dtype == "float32":
        assert_close("float32 logits", logits.numpy(), want, TOL_F32)
    else:
        # bfloat16 keeps ~3 significant digits: compare relative to the logits' spread and
        # require the same argmax at most positions.
        scale = float(np.abs(want).max())
        assert_close("bfloat16 logits", logits.numpy(), want, 0.1 * scale)
        agree = (logits.numpy().argmax(-1) == want.argmax(-1)).mean()
        assert agree >= 0.8, f"bfloat16 argmax agrees with float32 HF at {agree:.0%} of positions"


# ------------------------------------------------------------------------------ tokens

TEXTS = ["Hello world", " leading space", "naïve café — 日本語 テキスト", "line\nbreaks\n\n  and   spaces",
         "<|endoftext|> special", "def f(x):\n    return x ** 2  # code", "Ünïcödé 🙂 emoji", ""]


def test_transformerlens_names_and_their_aliases():
    """TransformerLens's names are the implementations; simplescope's own are the same functions."""
    assert ss.Model.tokenize is ss.Model.to_tokens
    assert ss.Model.decode is ss.Model.to_string
    assert callable(ss.Model.to_str_tokens)
    params = inspect.signature(ss.Model.run_with_cache).parameters
    assert list(params)[:4] == ["self", "tokens", "names_filter", "return_type"]
    assert params["names"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", ["to_tokens", "tokenize"])
def test_tokenize_matches_hf_tokenizers(model, hf_tokenizer, name):
    to_tokens = getattr(model, name)
    got = to_tokens(TEXTS)
    for text, ids in zip(TEXTS, got):
        want = hf_tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == want, f"{name}({text!r}) = {ids}, HF tokenizers gives {want}"
    assert to_tokens(TEXTS[0]) == got[0]  # a single text gives a flat list


@pytest.mark.parametrize("name", ["to_tokens", "tokenize"])
def test_tokenize_prepend_bos(model, name):
    to_tokens = getattr(model, name)
    assert to_tokens("Hello", prepend_bos=True) == [model.config["bos_token_id"]] + to_tokens("Hello")


@pytest.mark.parametrize("name", ["to_string", "decode"])
def test_decode_matches_hf_tokenizers(model, hf_tokenizer, name):
    to_string = getattr(model, name)
    for text in TEXTS:
        ids = hf_tokenizer.encode(text, add_special_tokens=False).ids
        want = hf_tokenizer.decode(ids, skip_special_tokens=False)
        assert to_string(ids) == want, f"{name}({ids}) = {to_string(ids)!r}, HF gives {want!r}"
        assert to_string(np.asarray(ids, dtype=np.int64)) == want


def test_to_str_tokens_each_whole_token_matches_hf(model, hf_tokenizer):
    """Every token of TEXTS that HF decodes alone to whole characters (not part of a UTF-8
    sequence, which HF shows as U+FFFD) has HF's string, special tokens included."""
    ids = sorted({i for text in TEXTS for i in hf_tokenizer.encode(text, add_special_tokens=False).ids})
    whole = [i for i in ids if "\ufffd" not in hf_tokenizer.decode([i], skip_special_tokens=False)]
    assert len(whole) >= 30 and model.config["bos_token_id"] in whole, whole
    want = [hf_tokenizer.decode([i], skip_special_tokens=False) for i in whole]
    assert model.to_str_tokens(whole) == want


def test_to_str_tokens_matches_hf(model, hf_tokenizer):
    ids = hf_tokenizer.encode("Hello naïve world", add_special_tokens=False).ids
    got = model.to_str_tokens(ids)
    want = [hf_tokenizer.decode([i]) for i in ids]
    assert len(got) == len(ids)
    assert "".join(got) == "".join(want) == "Hello naïve world", (got, want)


# ------------------------------------------------------------------------------ run_with_cache

def test_run_with_cache_single_vs_hf(model, hf_model):
    ids = model.tokenize("The quick brown fox jumps over the lazy dog.", prepend_bos=True)
    logits, cache = model.run_with_cache(ids)
    want_logits, want_sites = hf_forward(hf_model, [ids])
    L = model.n_layers
    assert set(cache) == {"hook_embed"} | {f"blocks.{l}.hook_resid_post" for l in range(L)}
    assert_close("logits", logits.numpy(), want_logits, TOL_F32)
    for name, want in want_sites.items():
        assert tuple(cache[name].shape) == (1, len(ids), model.config["n_embd"]), name
        assert_close(name, cache[name].numpy(), want, TOL_F32)
    # layers really differ (the fixture's weights are not near-identity)
    d = np.abs(cache["blocks.0.hook_resid_post"].numpy() - cache[f"blocks.{L - 1}.hook_resid_post"].numpy()).max()
    assert d > 0.5, f"resid_post of the first and last block differ by only {d}"


@pytest.mark.parametrize("padding", ["right", "left"])
def test_run_with_cache_ragged_batch_vs_hf_padded(model, hf_model, padding):
    """A ragged batch: each row's valid positions equal HF's padded batch (attention mask, and
    for left padding position ids counting from each sequence's first token)."""
    seqs = model.tokenize(["Short one.", "A somewhat longer sentence with more tokens in it, surely.",
                           "Mid length text here"], prepend_bos=True)
    T = max(map(len, seqs))
    logits, cache = model.run_with_cache(seqs, return_type="numpy")
    assert logits.shape == (len(seqs), T, 50400)
    pad = 50256
    ids = np.full((len(seqs), T), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), T), dtype=np.int64)
    pos = np.zeros((len(seqs), T), dtype=np.int64)
    for i, q in enumerate(seqs):
        sl = slice(0, len(q)) if padding == "right" else slice(T - len(q), T)
        ids[i, sl], mask[i, sl], pos[i, sl] = q, 1, np.arange(len(q))
    want_logits, want_sites = hf_forward(hf_model, ids, torch.as_tensor(mask), torch.as_tensor(pos))
    for i, q in enumerate(seqs):
        hf_sl = slice(0, len(q)) if padding == "right" else slice(T - len(q), T)
        assert_close(f"row {i} logits ({padding} padded HF)", logits[i, :len(q)], want_logits[i, hf_sl], TOL_F32)
        for name, want in want_sites.items():
            assert_close(f"row {i} {name} ({padding} padded HF)", cache[name][i, :len(q)], want[i, hf_sl], TOL_F32)


def test_run_with_cache_names_filter(model):
    """names_filter (TransformerLens's keyword) limits the cache; names is its alias."""
    ids = model.to_tokens("Hello there, general.", prepend_bos=True)
    logits, full = model.run_with_cache(ids)
    keep = ["hook_embed", "blocks.0.hook_resid_post"]
    lg, only = model.run_with_cache(ids, names_filter=keep)
    assert sorted(only) == sorted(keep)
    assert torch.equal(lg, logits) and all(torch.equal(only[k], full[k]) for k in keep)
    _, by_alias = model.run_with_cache(ids, names=keep)
    assert sorted(by_alias) == sorted(keep) and all(torch.equal(by_alias[k], full[k]) for k in keep)
    with pytest.raises(TypeError, match="names_filter or its alias names"):
        model.run_with_cache(ids, names_filter=keep, names=keep)


def test_run_with_cache_names_and_inputs(model):
    ids = model.tokenize("Hello there, general.", prepend_bos=True)
    full, cache = model.run_with_cache(np.asarray([ids]))
    lg, only = model.run_with_cache(torch.tensor(ids), names=["blocks.1.hook_resid_post"])
    assert list(only) == ["blocks.1.hook_resid_post"]
    assert torch.equal(only["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_post"])
    assert torch.equal(lg, full)
    with pytest.raises(KeyError, match="blocks.2.hook_resid_post"):
        only["blocks.2.hook_resid_post"]
