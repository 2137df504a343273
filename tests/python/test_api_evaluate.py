"""model.evaluate: shapes, per_example, invariants that cannot be faked (last layer and
self-patching give prec1 = 1), custom methods and grids, given and random positions, and the
logit lens / source prediction against a plain HF forward."""
import numpy as np
import pytest
import torch

from helpers import assert_close

METHODS = ("logitlens", "patchscope", "simplescope")
FIELDS = ("prec1", "surprisal", "paper_surprisal", "position", "source_top1", "patched_top1")


@pytest.fixture(scope="module")
def res(model, prompts):
    return model.evaluate(prompts, progress=False)


def test_shapes_and_per_example(model, prompts, res):
    P, L = len(prompts), model.n_layers
    assert res.methods == list(METHODS) and res.layers == list(range(L)) and res.n_prompts == P
    lengths = [len(t) for t in model.tokenize(prompts, prepend_bos=True)]
    for m in METHODS:
        pe = res.per_example(m)
        assert set(FIELDS) <= set(pe)
        for f in FIELDS:
            assert pe[f].shape == (P, L), f"{m}.{f} shape {pe[f].shape}"
        for metric in ("prec1", "surprisal", "paper_surprisal"):
            mean = getattr(res, metric)[m]
            assert mean.shape == (L,)
            assert_close(f"{m} {metric} mean", mean, pe[metric].astype(np.float64).mean(0), 1e-6)
        assert set(np.unique(pe["prec1"])) <= {0.0, 1.0}
        assert (pe["surprisal"] >= 0).all() and (pe["paper_surprisal"] >= 0).all()
        pos = pe["position"]
        assert (pos >= 0).all() and (pos < np.asarray(lengths)[:, None]).all(), pos
        assert ((pe["prec1"] == 1) == (pe["patched_top1"] == pe["source_top1"])).all()


def test_last_layer_prec1_is_one(res, model):
    for m in METHODS:
        p = res.per_example(m)["prec1"][:, -1]
        assert (p == 1).all(), f"{m}: prec1 at the last layer is {p}, want all 1"
    # the other layers are not trivially 1 (the model's blocks matter)
    assert res.prec1["logitlens"][0] < 1


def test_source_and_logitlens_vs_hf(model, hf_model, prompts, res):
    """source_top1 = HF argmax at p; logitlens surprisal = -log softmax(lm_head(ln_f(h)))[y]."""
    pe = res.per_example("logitlens")
    toks = model.tokenize(prompts, prepend_bos=True)
    for i, ids in enumerate(toks):
        with torch.no_grad():
            out = hf_model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
            for l in range(model.n_layers):
                p = int(pe["position"][i, l])
                y = int(out.logits[0, p].argmax())
                assert pe["source_top1"][i, l] == y, f"prompt {i} layer {l} pos {p}: source_top1 {pe['source_top1'][i, l]}, HF {y}"
                h = out.hidden_states[l + 1][0, p]
                if l == model.n_layers - 1:
                    h = out.hidden_states[-1][0, p]  # HF's last hidden state already has ln_f
                    lp = torch.log_softmax(hf_model.lm_head(h), -1)
                else:
                    lp = torch.log_softmax(hf_model.lm_head(hf_model.transformer.ln_f(h)), -1)
                assert pe["patched_top1"][i, l] == int(lp.argmax()), f"prompt {i} layer {l}"
                assert_close(f"prompt {i} layer {l} logitlens surprisal", pe["surprisal"][i, l], -float(lp[y]), 1e-3)


@pytest.mark.parametrize("prepend_bos", [True, False])
def test_self_patch_is_identity(model, prompts, prepend_bos):
    """Target prompt = the source itself, placeholder = the source position: prec1 = 1 at every
    layer (and the patched distribution is the source's: surprisal == paper_surprisal)."""
    for text in prompts[:3]:
        n = len(model.tokenize(text))  # tokens without BOS
        for k in sorted({0, n // 2, n - 1}):
            p = k + (1 if prepend_bos else 0)  # the source position counts BOS
            meth = {"name": "self", "target": text, "placeholder": k, "target_layer": "same"}
            r = model.evaluate([text], methods=[meth], positions=[p], prepend_bos=prepend_bos, progress=False)
            pe = r.per_example("self")
            assert (pe["position"] == p).all()
            assert (pe["prec1"] == 1).all(), f"{text[:30]!r} p={p} bos={prepend_bos}: prec1 {pe['prec1']}"
            assert_close("self-patch surprisal vs paper_surprisal", pe["surprisal"], pe["paper_surprisal"], 1e-3)


def test_grid_all_shape_and_columns(model, prompts):
    g = {"name": "grid", "target": "?", "target_layer": "all"}
    pos = np.array([len(t) - 2 for t in model.tokenize(prompts[:3], prepend_bos=True)])
    r = model.evaluate(prompts[:3], methods=["simplescope", "logitlens", g], positions=pos, progress=False)
    L = model.n_layers
    assert r.target_layers["grid"] == list(range(L))
    pe = r.per_example("grid")
    assert pe["prec1"].shape == (3, L, L) and pe["position"].shape == (3, L)
    assert r.prec1["grid"].shape == (L, L)
    # column ℓ* = ℓ is the "same" method with target "?" (simplescope); the last column patches
    # into the last block's output: the logit lens.
    same, lens = r.per_example("simplescope"), r.per_example("logitlens")
    for l in range(L):
        assert (pe["patched_top1"][:, l, l] == same["patched_top1"][:, l]).all(), f"layer {l}"
        assert_close(f"grid[{l},{l}] surprisal", pe["surprisal"][:, l, l], same["surprisal"][:, l], 1e-4)
        assert (pe["patched_top1"][:, l, L - 1] == lens["patched_top1"][:, l]).all(), f"layer {l}"
        assert_close(f"grid[{l},last] surprisal", pe["surprisal"][:, l, L - 1], lens["surprisal"][:, l], 1e-4)
    assert r.is_grid("grid") and "grid" not in r.line_methods


def test_given_positions_1d_and_2d(model, prompts):
    toks = model.tokenize(prompts, prepend_bos=True)
    P, L = len(prompts), model.n_layers
    one = np.array([len(t) // 2 for t in toks])
    r1 = model.evaluate(prompts, positions=one, progress=False)
    for m in METHODS:
        assert (r1.per_example(m)["position"] == one[:, None]).all()
    rng = np.random.default_rng(0)
    two = np.stack([rng.integers(0, len(t), L) for t in toks])
    r2 = model.evaluate(prompts, positions=two, progress=False)
    for m in METHODS:
        assert (r2.per_example(m)["position"] == two).all()
    # a 2-D array with a layers subset
    sub = two[:, [1, 3]]
    r3 = model.evaluate(prompts, positions=sub, layers=[1, 3], progress=False)
    assert r3.layers == [1, 3]
    for m in METHODS:
        assert (r3.per_example(m)["position"] == sub).all()
        assert (r3.per_example(m)["source_top1"] == r2.per_example(m)["source_top1"][:, [1, 3]]).all()


def test_last_positions(model, prompts):
    toks = model.tokenize(prompts, prepend_bos=False)
    r = model.evaluate(prompts, positions="last", prepend_bos=False, progress=False)
    want = np.array([len(t) - 1 for t in toks])
    for m in METHODS:
        assert (r.per_example(m)["position"] == want[:, None]).all()


def test_random_positions_reproducible(model, prompts):
    a = model.evaluate(prompts, seed=42, progress=False)
    b = model.evaluate(prompts, seed=42, progress=False)
    c = model.evaluate(prompts, seed=43, progress=False)
    assert a.allclose(b, check_meta=False), "two runs with seed 42 differ"
    pa = np.stack([a.per_example(m)["position"] for m in METHODS])
    pc = np.stack([c.per_example(m)["position"] for m in METHODS])
    assert (pa != pc).any(), "seeds 42 and 43 drew the same positions"
    # drawn independently per method and layer, not one position per prompt
    assert len(np.unique(pa[:, 0, :])) > 1


def test_token_prompts_equal_text_prompts(model, prompts):
    a = model.evaluate(prompts[:3], progress=False)
    b = model.evaluate(model.tokenize(prompts[:3]), progress=False)
    assert a.allclose(b, check_meta=False)
