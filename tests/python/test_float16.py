"""float16 end to end on the CPU (torch's CPU kernels do float16 matmuls): the forward logits, the
residual stream and evaluate's metrics of simplescope loaded in float16, against HF transformers
running the same checkpoint in float16.

The bounds. float16 keeps 11 significant bits: one unit in the last place is 2^-10 of the value's
binade, ~0.1% of it. simplescope and HF run the same ATen matmuls but round at different points
(fused vs unfused gelu and rotary, where attention scores are upcast, the order of the residual
additions), so they differ by a few units in the last place of the values involved. Measured on
the tiny model: logits 0.1% of the largest logit (~2 ulps), residuals < 0.1% of each layer's
largest entry, surprisals up to 0.004 nats. The bounds are 1% of the scale (~10 ulps) for logits and
residuals and 0.05 nats for surprisals, several times the measured differences, while a real bug
(a wrong rotary, mask, layer norm or residual, or a missing upcast that overflows) moves them by
tens of percent. A top-1 may differ only where HF's own top-2 gap is under 0.05 nats (a near-tie
at this precision).  bfloat16 (8 bits) is tested in test_api_model.py with a 10% bound.
"""
import numpy as np
import pytest
import torch

import simplescope as ss
from helpers import assert_close
from patch_reference import block_output, patch_logits

TIE = 0.05  # nats: a top-1 this close to the runner-up may flip under float16 rounding
SURPRISAL_TOL = 0.05


@pytest.fixture(scope="module")
def hf16(tiny_dir):
    from transformers import GPTJForCausalLM
    return GPTJForCausalLM.from_pretrained(tiny_dir, dtype=torch.float16).eval()


@pytest.fixture(scope="module")
def m16(tiny_dir):
    m = ss.load(tiny_dir, device="cpu", dtype="float16")
    yield m
    m.close()


def test_forward_logits_and_residuals_vs_hf_float16(m16, hf16, model):
    assert m16.config["dtype"] == "float16"
    for ids in (model.tokenize("The quick brown fox jumps over the lazy dog.", prepend_bos=True),
                model.tokenize("1 2 3 4 5 6 7 8 9 10 11 12", prepend_bos=False)):
        logits, cache = m16.run_with_cache(ids)
        with torch.no_grad():
            out = hf16(torch.tensor([ids]), output_hidden_states=True)
        want = out.logits[0].float().numpy()
        scale = float(np.abs(want).max())
        assert_close("float16 logits / largest logit", logits[0].numpy() / scale, want / scale, 0.01)
        top_ok = logits[0].numpy().argmax(-1) == want.argmax(-1)
        srt = np.sort(want, -1)
        assert (top_ok | (srt[:, -1] - srt[:, -2] < TIE)).all(), "a float16 argmax differs from HF's away from a tie"
        for l in range(m16.n_layers - 1):  # HF's hidden_states[L] is after ln_f
            got = cache[f"blocks.{l}.hook_resid_post"][0].numpy()
            ref = out.hidden_states[l + 1][0].float().numpy()
            s = float(np.abs(ref).max())
            assert_close(f"float16 resid_post {l} / its largest entry", got / s, ref / s, 0.01)
        last = m16.n_layers - 1
        got = cache[f"blocks.{last}.hook_resid_post"][0, -1].float()
        ref = block_output(hf16, ids, last, len(ids) - 1).float()
        assert_close("float16 last block output", got / ref.abs().max(), ref / ref.abs().max(), 0.01)


def test_evaluate_float16_vs_hf_float16(m16, hf16, prompts):
    """Per example, every method: the source top-1, the patched top-1 (up to near-ties) and the
    surprisals match HF float16 with the paper's hook patching."""
    texts = prompts[:4]
    toks = m16.tokenize(texts, prepend_bos=True)
    L = m16.n_layers
    rng = np.random.default_rng(11)
    pos = np.stack([rng.integers(0, len(t), L) for t in toks])
    res = m16.evaluate(texts, positions=pos, progress=False)
    targets = {"patchscope": m16.tokenize("cat -> cat\n1135 -> 1135\nhello -> hello\n?", prepend_bos=True),
               "simplescope": m16.tokenize("?", prepend_bos=True)}
    worst = 0.0
    for i, ids in enumerate(toks):
        with torch.no_grad():
            src = hf16(torch.tensor([ids])).logits[0].float()
        for l in range(L):
            p = int(pos[i, l])
            ls = torch.log_softmax(src[p], -1)
            y = int(ls.argmax())
            h = block_output(hf16, ids, l, p)
            for meth in ("logitlens", "patchscope", "simplescope"):
                pe = res.per_example(meth)
                if meth == "logitlens":
                    with torch.no_grad():
                        lg = hf16.lm_head(hf16.transformer.ln_f(h)).float()
                else:
                    t = targets[meth]
                    lg = patch_logits(hf16, t, h, l, [len(t) - 1])
                lp = torch.log_softmax(lg, -1)
                top = int(lp.argmax())
                gap = float(lp.topk(2).values[0] - lp.topk(2).values[1])
                sgap = float(ls.topk(2).values[0] - ls.topk(2).values[1])
                where = f"{meth} prompt {i} layer {l}"
                if sgap >= TIE:
                    assert pe["source_top1"][i, l] == y, where
                    d = abs(float(pe["surprisal"][i, l]) + float(lp[y]))
                    assert d <= SURPRISAL_TOL, f"{where}: surprisal differs by {d:.3g}"
                    worst = max(worst, d)
                if gap >= TIE and sgap >= TIE:
                    assert pe["patched_top1"][i, l] == top, where
                    assert pe["prec1"][i, l] == float(top == y), where
                    d = abs(float(pe["paper_surprisal"][i, l]) + float(ls[top]))
                    assert d <= SURPRISAL_TOL, f"{where}: paper_surprisal differs by {d:.3g}"
                    worst = max(worst, d)
    print(f"float16 evaluate vs HF float16: worst surprisal difference {worst:.3g} nats")


def test_evaluate_float16_means_close_to_float32(m16, model, prompts):
    """The per-layer means in float16 are those of float32 up to rounding (same positions)."""
    a = model.evaluate(prompts, seed=3, progress=False)
    b = m16.evaluate(prompts, seed=3, progress=False)
    for meth in a.methods:
        assert (a.per_example(meth)["position"] == b.per_example(meth)["position"]).all()
        agree = (a.per_example(meth)["prec1"] == b.per_example(meth)["prec1"]).mean()
        assert agree >= 0.9, f"{meth}: float16 prec1 equals float32's on {agree:.0%} of the items"
        assert_close(f"{meth} mean surprisal float16 vs float32", b.surprisal[meth], a.surprisal[meth], 0.05)
        assert np.isfinite(b.per_example(meth)["surprisal"]).all()
