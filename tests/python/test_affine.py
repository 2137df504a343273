"""The affine-mapping baseline (model.fit_affine, ss.AffineMaps, evaluate's {"name", "maps"}) against
a brute-force reference: HF transformers' block outputs (forward hooks), numpy.linalg.lstsq with a
bias column, and HF's lm_head(ln_f(h·W + b)) for the metrics."""
import numpy as np
import pytest
import torch

import simplescope as ss
from conftest import DEMO_CORPUS
from helpers import assert_close

N_DOCS = 120  # > n_embd = 64 of the tiny model
SEED = 5


@pytest.fixture(scope="module")
def train_texts():
    return ss.read_corpus(DEMO_CORPUS)[:N_DOCS + 10]


@pytest.fixture(scope="module")
def maps(model, train_texts):
    return model.fit_affine(train_texts, n_docs=N_DOCS, seed=SEED, batch_docs=17, progress=False)


def hf_block_outputs(hf_model, ids):
    """[n_layer, T, C] float64: the output of every block (the last one before ln_f), by hooks."""
    outs = {}
    hooks = [blk.register_forward_hook(lambda m, i, o, l=l: outs.__setitem__(l, (o[0] if isinstance(o, tuple) else o)[0]))
             for l, blk in enumerate(hf_model.transformer.h)]
    try:
        with torch.no_grad():
            logits = hf_model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    finally:
        for h in hooks:
            h.remove()
    return torch.stack([outs[l] for l in range(len(outs))]).double(), logits.double()


def reference_fit(hf_model, hf_tokenizer, texts, seed, context=128):
    """numpy.linalg.lstsq of [X, 1] -> Y per layer on HF's block outputs at the same positions."""
    ids = [([50256] + hf_tokenizer.encode(t, add_special_tokens=False).ids)[:context] for t in texts]
    rng = np.random.default_rng(seed)
    pos = [int(rng.integers(0, len(t))) for t in ids]
    rows = np.stack([hf_block_outputs(hf_model, t)[0][:, p].numpy() for t, p in zip(ids, pos)])  # [n, L, C]
    L = rows.shape[1]
    Y = rows[:, L - 1]
    out = []
    for l in range(L):
        A = np.concatenate([rows[:, l], np.ones((len(rows), 1))], 1)
        sol, *_ = np.linalg.lstsq(A, Y, rcond=None)
        resid = Y - A @ sol
        mse = float((resid ** 2).sum() / resid.size)
        r2 = 1 - float((resid ** 2).sum()) / float(((Y - Y.mean(0)) ** 2).sum())
        out.append((sol[:-1], sol[-1], mse, r2, rows[:, l]))
    return out, np.array(pos)


def test_fit_matches_numpy_lstsq_on_hf_hidden_states(model, hf_model, hf_tokenizer, train_texts, maps):
    ref, pos = reference_fit(hf_model, hf_tokenizer, train_texts[:N_DOCS], SEED)
    assert (maps.positions == pos).all(), "training positions differ from default_rng(seed).integers(0, len)"
    assert maps.layers == list(range(model.n_layers)) and maps.meta["n_docs"] == N_DOCS
    for l, (W, b, mse, r2, X) in enumerate(ref):
        # the maps themselves: the float32 hidden states differ from HF's by ~1e-6, which the
        # least squares amplifies by the conditioning of X; compare the fitted values instead
        # of W entry by entry, relative to the targets' spread
        got = X @ maps.W[l].astype(np.float64) + maps.b[l]
        want = X @ W + b
        spread = float(np.sqrt(((want - want.mean(0)) ** 2).mean()))
        assert_close(f"layer {l} fitted values / spread", got / spread, want / spread, 1e-3)
        assert_close(f"layer {l} mse", maps.mse[l], mse, 1e-4 * max(1.0, mse) + 1e-6)
        assert_close(f"layer {l} R²", maps.r2[l], r2, 1e-4)
    # the last layer maps onto itself: W = I, b = 0, R² = 1
    last = model.n_layers - 1
    assert_close("last-layer W", maps.W[last], np.eye(maps.n_embd), 1e-3)
    assert maps.r2[last] > 1 - 1e-6 and maps.r2[0] < maps.r2[last]


def test_evaluate_affine_matches_hf_decoding(model, hf_model, prompts, maps):
    """Per example: h·W_ℓ + b_ℓ decoded by HF's ln_f and lm_head (no block) gives the same
    patched top-1, surprisal and paper_surprisal; the source prediction is HF's."""
    toks = model.tokenize(prompts, prepend_bos=True)
    rng = np.random.default_rng(3)
    L = model.n_layers
    pos = np.stack([rng.integers(0, len(t), L) for t in toks])
    res = model.evaluate(prompts, methods=["logitlens", {"name": "affine", "maps": maps}], positions=pos,
                         progress=False)
    pe = res.per_example("affine")
    assert pe["prec1"].shape == (len(prompts), L)
    for i, ids in enumerate(toks):
        blocks, logits = hf_block_outputs(hf_model, ids)
        for l in range(L):
            p = int(pos[i, l])
            y = int(logits[p].argmax())
            h = blocks[l, p].float() @ torch.from_numpy(maps.W[l]) + torch.from_numpy(maps.b[l])
            with torch.no_grad():
                lp = torch.log_softmax(hf_model.lm_head(hf_model.transformer.ln_f(h)).double(), -1)
            top = int(lp.argmax())
            ls = torch.log_softmax(logits[p], -1)
            assert pe["source_top1"][i, l] == y and pe["patched_top1"][i, l] == top, f"prompt {i} layer {l}"
            assert pe["prec1"][i, l] == float(top == y)
            assert_close(f"prompt {i} layer {l} surprisal", pe["surprisal"][i, l], -float(lp[y]), 1e-3)
            assert_close(f"prompt {i} layer {l} paper_surprisal", pe["paper_surprisal"][i, l], -float(ls[top]), 1e-3)
    # at the last layer the map is the identity: the affine baseline is the logit lens there
    assert (pe["prec1"][:, -1] == 1).all()
    assert res.meta["methods"]["affine"]["affine"]["n_docs"] == N_DOCS


def test_save_load_roundtrip(tmp_path, model, prompts, maps):
    written = maps.save(tmp_path / "maps")
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["affine.json", "affine.npz"]
    back = ss.AffineMaps.load(tmp_path / "maps")
    assert back.layers == maps.layers and np.array_equal(back.W, maps.W) and np.array_equal(back.b, maps.b)
    assert np.array_equal(back.r2, maps.r2) and np.array_equal(back.positions, maps.positions)
    assert back.meta["config"]["n_embd"] == 64 and back.meta["seed"] == SEED and back.meta["n_docs"] == N_DOCS
    a = model.evaluate(prompts[:3], methods=[{"name": "affine", "maps": maps}], seed=1, progress=False)
    b = model.evaluate(prompts[:3], methods=[{"name": "affine", "maps": str(tmp_path / "maps")}], seed=1, progress=False)
    for f in ("prec1", "surprisal", "paper_surprisal", "patched_top1"):
        assert np.array_equal(a.per_example("affine")[f], b.per_example("affine")[f])
    with pytest.raises(FileNotFoundError, match="affine.npz"):
        ss.AffineMaps.load(tmp_path)


def test_layer_subset_and_inspect(model, train_texts, prompts):
    sub = model.fit_affine(train_texts, n_docs=N_DOCS, layers=[1, 2], progress=False)
    assert sub.layers == [1, 2] and sub.W.shape == (2, 64, 64)
    r = model.evaluate(prompts[:2], methods=[{"name": "aff", "maps": sub}], layers=[2, 1], progress=False)
    assert r.layers == [2, 1]
    with pytest.raises(ValueError, match=r"no map for layers \[0, 3\]"):
        model.evaluate(prompts[:2], methods=[{"name": "aff", "maps": sub}], progress=False)
    df = model.inspect(prompts[0], methods=[{"name": "aff", "maps": sub}], layers=[1, 2], k=3)
    assert set(df[df.method == "aff"].layer) == {1, 2}


def test_fit_affine_needs_more_documents_than_the_width(model, train_texts):
    with pytest.raises(ValueError, match=r"n_docs=64 .*n_embd=64.*need n_docs > 64"):
        model.fit_affine(train_texts, n_docs=64, progress=False)
    with pytest.raises(ValueError, match=r"n_docs=500 but only 130 documents"):
        model.fit_affine(train_texts, n_docs=500, progress=False)
    with pytest.raises(ValueError, match=r"layers \[4\] must be distinct and in \[0, 4\)"):
        model.fit_affine(train_texts, n_docs=N_DOCS, layers=[4], progress=False)


def test_maps_of_another_model_are_refused(model, prompts, maps):
    narrow = ss.AffineMaps(layers=maps.layers, W=maps.W[:, :32, :32], b=maps.b[:, :32], mse=maps.mse,
                           r2=maps.r2, meta=dict(maps.meta, config=dict(maps.meta["config"], n_embd=32)))
    with pytest.raises(ValueError, match=r"fitted for n_embd=32 .*the model has n_embd=64"):
        model.evaluate(prompts[:1], methods=[{"name": "affine", "maps": narrow}], progress=False)
    deeper = ss.AffineMaps(layers=maps.layers, W=maps.W, b=maps.b, mse=maps.mse, r2=maps.r2,
                           meta=dict(maps.meta, config=dict(maps.meta["config"], n_layer=6)))
    with pytest.raises(ValueError, match=r"n_layer=6, but the model has n_layer=4"):
        model.evaluate(prompts[:1], methods=[{"name": "affine", "maps": deeper}], progress=False)
    with pytest.raises(ValueError, match=r"maps must be an ss.AffineMaps"):
        model.evaluate(prompts[:1], methods=[{"name": "affine", "maps": np.eye(64)}], progress=False)
    # the core checks the wire form too (a caller of the C API gets the same kind of message)
    wire = [{"layer": l, "W": np.eye(32, dtype=np.float32), "b": np.zeros(32, np.float32)} for l in range(4)]
    with pytest.raises(ValueError, match=r"W has shape \[32, 32\], want \[64, 64\]"):
        model._call("evaluate", {"texts": prompts[:1], "methods": [{"name": "a", "kind": "affine", "maps": wire}]})
