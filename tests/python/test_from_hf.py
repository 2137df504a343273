"""ss.from_hf: a simplescope model over a HF GPTJForCausalLM's own parameters (issue 12 item 3).
The reference is HF transformers itself: the same logits and hidden states, and in-place changes
to the HF parameters show up in simplescope's results (the memory is shared, not copied)."""
import gc

import pytest
import torch

import simplescope as ss
from simplescope import _native
from helpers import assert_close

TOL_F32 = 1e-4


def live():
    gc.collect()
    return _native.lib().live_tensors()


@pytest.fixture
def fresh_hf(tiny_dir):
    from transformers import GPTJForCausalLM
    return GPTJForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()


def hf_logits(hf, ids):
    with torch.no_grad():
        return hf(input_ids=torch.tensor([ids]), use_cache=False).logits


IDS = [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]


def test_from_hf_matches_hf_and_shares_parameters(fresh_hf):
    base = live()
    m = ss.from_hf(fresh_hf)
    assert m.config["dtype"] == "float32" and m.config["device"] == "cpu" and m.config["n_layer"] == 4
    assert m.tokenize("Hello world") == [15496, 995]  # the bundled GPT-J tokenizer
    logits, cache = m.run_with_cache(IDS)
    assert_close("logits", logits.numpy(), hf_logits(fresh_hf, IDS).numpy(), TOL_F32)
    with torch.no_grad():
        hs = fresh_hf(input_ids=torch.tensor([IDS]), output_hidden_states=True, use_cache=False).hidden_states
    for l in range(3):
        assert_close(f"blocks.{l}.hook_resid_post", cache[f"blocks.{l}.hook_resid_post"].numpy(), hs[l + 1].numpy(), TOL_F32)
    # every parameter changed in place: simplescope computes with the new values, so it holds the
    # same memory (a copy would still give the old logits)
    with torch.no_grad():
        for i, p in enumerate(fresh_hf.parameters()):
            p.mul_(0.9 + 0.01 * (i % 7))
    after = hf_logits(fresh_hf, IDS)
    assert (after - logits).abs().max() > 0.1, "the in-place change did not change HF's logits"
    got, _ = m.run_with_cache(IDS, names_filter=[])
    assert_close("logits after changing the HF parameters in place", got.numpy(), after.numpy(), TOL_F32)
    # the model keeps the memory alive after the HF model is gone
    del fresh_hf
    gc.collect()
    again, _ = m.run_with_cache(IDS, names_filter=[])
    assert torch.equal(again, got)
    m.close()
    del m, logits, cache, got, again
    assert live() == base


def test_from_hf_other_dtype_copies(fresh_hf):
    m = ss.from_hf(fresh_hf, dtype=torch.bfloat16, tokenizer=False)
    try:
        assert m.config["dtype"] == "bfloat16" and not m.config["has_tokenizer"]
        before, _ = m.run_with_cache(IDS, names_filter=[])
        want = hf_logits(fresh_hf, IDS)
        scale = float(want.abs().max())
        assert_close("bfloat16 logits", before.numpy(), want.numpy(), 0.1 * scale)
        with torch.no_grad():
            fresh_hf.transformer.ln_f.bias.add_(5.0)
        after, _ = m.run_with_cache(IDS, names_filter=[])
        assert torch.equal(before, after), "a converted copy should not see in-place changes"
        with pytest.raises(ValueError, match="no tokenizer"):
            m.tokenize("Hello")
    finally:
        m.close()


def test_from_hf_bad_parameters(fresh_hf):
    base = live()
    fresh_hf.transformer.h[1].attn.q_proj.weight = torch.nn.Parameter(torch.zeros(64, 32))
    with pytest.raises(ValueError, match=r"tensor transformer.h.1.attn.q_proj.weight: shape \[64 32\], want \[64 64\]"):
        ss.from_hf(fresh_hf)
    del fresh_hf.transformer.h[1].attn.q_proj.weight
    with pytest.raises(ValueError, match="tensor transformer.h.1.attn.q_proj.weight not given"):
        ss.from_hf(fresh_hf)
    assert live() == base, "a refused from_hf left tensors behind"
