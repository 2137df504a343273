"""simplescope.tasks.cross_model: the grouped least squares recovers known affine maps exactly on
synthetic data; on a model and its residual-permuted, shifted copy (hidden states related by a
known affine map at every layer) the fitted maps recover that map and patching recovers the
source's predictions; the metrics equal HF transformers hooks with the same maps; mismatched
vocabularies and bad layers are refused before any work."""
import os
import shutil

import numpy as np
import pytest
import torch

import simplescope as ss
from simplescope.lstsq import StreamingLstsq
from simplescope.tasks.cross_model import GroupedLstsq, draw_positions
from conftest import DEMO_CORPUS, TOKENIZER_DIR, make_tiny_gptj
from patch_reference import block_output, patch_logits

SHIFT = 0.5


def test_grouped_lstsq_recovers_known_affine_maps():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    A = [rng.normal(size=(8, 5)) for _ in range(3)]
    b = [rng.normal(size=5) for _ in range(3)]
    acc = GroupedLstsq(8, 5, 3)
    for lo in range(0, 300, 70):  # streamed in uneven batches
        acc.add(X[lo:lo + 70], np.hstack([X[lo:lo + 70] @ a + c for a, c in zip(A, b)]))
    for mp, a, c in zip(acc.solve_blocks(), A, b):
        np.testing.assert_allclose(mp.W, a, atol=1e-5)
        np.testing.assert_allclose(mp.b, c, atol=1e-5)
        assert mp.r2 == pytest.approx(1.0, abs=1e-10) and mp.mse == pytest.approx(0.0, abs=1e-10)


def test_grouped_lstsq_per_block_fit_equals_separate_fits():
    """With noise: each block's W, b, mse and R² equal a StreamingLstsq fitted on that block alone."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6))
    Ys = [X @ rng.normal(size=(6, 4)) + rng.normal(scale=s, size=(200, 4)) for s in (0.1, 1.0)]
    acc = GroupedLstsq(6, 4, 2)
    acc.add(X, np.hstack(Ys))
    for mp, Y in zip(acc.solve_blocks(), Ys):
        one = StreamingLstsq(6, 4)
        one.add(X, Y)
        want = one.solve()
        np.testing.assert_allclose(mp.W, want.W, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mp.b, want.b, rtol=1e-5, atol=1e-6)
        assert mp.mse == pytest.approx(want.mse, rel=1e-9) and mp.r2 == pytest.approx(want.r2, rel=1e-9)


def permuted_copy(hf, perm, shift):
    """A GPT-J whose residual stream is hf's with its dimensions permuted (new j = old perm[j]) and
    shift added to every dimension: layer norms remove the shift and the permutation commutes with
    everything else, so the outputs are the same and every block output h' = h[perm] + shift."""
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    p = torch.as_tensor(perm)
    for k in list(sd):
        v = sd[k]
        if k == "transformer.wte.weight":
            sd[k] = v[:, p] + shift
        elif k.endswith(("ln_1.weight", "ln_1.bias", "ln_f.weight", "ln_f.bias", "fc_out.bias")):
            sd[k] = v[p]
        elif k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "fc_in.weight")) or k == "lm_head.weight":
            sd[k] = v[:, p]
        elif k.endswith(("out_proj.weight", "fc_out.weight")):
            sd[k] = v[p, :]
    return sd


@pytest.fixture(scope="module")
def permuted(tmp_path_factory, hf_model):
    from transformers import GPTJForCausalLM
    path = str(tmp_path_factory.mktemp("tiny-permuted"))
    for name in os.listdir(TOKENIZER_DIR):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(path, name))
    perm = np.random.default_rng(3).permutation(64)
    hf2 = GPTJForCausalLM(hf_model.config).eval()
    hf2.load_state_dict(permuted_copy(hf_model, perm, SHIFT))
    hf2.save_pretrained(path, safe_serialization=True)
    m = ss.load(path)
    yield perm, m, hf2
    m.close()


@pytest.fixture(scope="module")
def texts():
    docs = ss.read_corpus(DEMO_CORPUS, max_docs=60)
    return docs[:40], docs[40:52]


def test_permuted_copy_is_exact(hf_model, permuted):
    perm, _, hf2 = permuted
    ids = list(range(100, 120))
    for layer in (0, 3):
        h = block_output(hf_model, ids, layer, 7)
        np.testing.assert_allclose(block_output(hf2, ids, layer, 7).numpy(), h[perm].numpy() + SHIFT, atol=1e-4)


def test_fitted_maps_recover_the_permutation(model, permuted, texts):
    perm, m2, _ = permuted
    train = model.to_tokens(texts[0])
    train = [t[:64] for t in train]
    pos = draw_positions(train, 4, np.random.default_rng(0))
    maps = ss.tasks.fit_maps(model, m2, train, pos, [0, 2], [0, 2], progress=False)
    P = np.zeros((64, 64))
    P[perm, np.arange(64)] = 1.0
    for l in (0, 2):
        np.testing.assert_allclose(maps[(l, l)].W, P, atol=2e-3)
        np.testing.assert_allclose(maps[(l, l)].b, SHIFT, atol=2e-3)
        assert maps[(l, l)].r2 > 0.99999
    assert maps[(0, 2)].r2 < 0.99  # different layers: no exact relation


def test_cross_model_grid_and_hf_reference(model, hf_model, hf_tokenizer, permuted, texts, tmp_path):
    perm, m2, hf2 = permuted
    out = tmp_path / "x"
    res = ss.tasks.cross_model(model, m2, texts[0], texts[1], [0, 2], [0, 2], positions_per_text=4,
                               max_tokens=64, out=str(out), save_maps=True, progress=False)
    assert res.pairs() == [(0, 0), (0, 2), (2, 0), (2, 2)]
    g = res.grid("prec1")
    assert g.loc[0, 0] == 1.0 and g.loc[2, 2] == 1.0  # the exact maps give the source's own predictions
    diag = res.df[res.df.layer_source == res.df.layer_target]
    # surprisal of the source's own top-1 through an exact map = the source's own surprisal of it
    same = ss.tasks.cross_model(model, model, texts[0], texts[1], [3], [3], positions_per_text=4, max_tokens=64,
                                progress=False).df
    np.testing.assert_allclose(diag.groupby("sample")["surprisal"].max().to_numpy(), same["surprisal"].to_numpy(),
                               atol=2e-3)
    # HF hooks, one row at a time, with the maps the run saved
    for ls, lt in ((0, 2), (2, 0)):
        z = np.load(out / "maps" / f"{ls}-{lt}.npz")
        W, b = torch.as_tensor(z["W"]), torch.as_tensor(z["b"])
        rows = res.df[(res.df.layer_source == ls) & (res.df.layer_target == lt)]
        for r in rows.itertuples():
            tokens = hf_tokenizer.encode(texts[1][r.sample], add_special_tokens=False).ids[:64][:r.position + 1]
            with torch.no_grad():
                src_logits = hf_model(torch.tensor([tokens])).logits[0, -1].double()
            y = int(src_logits.argmax())
            vec = block_output(hf_model, tokens, ls, len(tokens) - 1) @ W + b
            logp = torch.log_softmax(patch_logits(hf2, tokens, vec, lt, [len(tokens) - 1]).double(), -1)
            assert r.source_top1 == y
            assert r.patched_top1 == int(logp.argmax()), f"pair {ls}->{lt} sample {r.sample}"
            assert r.surprisal == pytest.approx(float(-logp[y]), abs=1e-3)
            src_logp = torch.log_softmax(src_logits, -1)
            assert r.paper_surprisal == pytest.approx(float(-src_logp[r.patched_top1]), abs=1e-3)
    back = ss.tasks.TaskResult.load(out)
    assert isinstance(back, ss.tasks.CrossModelResult) and back.df.equals(res.df)
    for name in ("prec1.png", "surprisal.png", "summary.csv"):
        assert os.path.getsize(out / name) > 0


def test_vocabulary_mismatch_and_bad_layers(model, tmp_path, texts):
    other = str(tmp_path / "v")
    make_tiny_gptj(other, vocab_size=50257)
    with ss.load(other) as m2:
        with pytest.raises(ValueError, match="vocabularies differ: the source model has 50400 tokens, the target 50257"):
            ss.tasks.cross_model(model, m2, texts[0], texts[1], out=str(tmp_path / "o"), progress=False)
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match=r"target_layers: layer 4 out of range \[0, 4\)"):
        ss.tasks.cross_model(model, model, texts[0], texts[1], [0], [4], progress=False)
    with pytest.raises(ValueError, match="needs more than 64"):
        ss.tasks.cross_model(model, model, texts[0][:10], texts[1], [0], [0], progress=False)


def test_cli_cross_model(tiny_dir, tmp_path, capsys):
    from simplescope import __main__ as cli
    out = tmp_path / "cli"
    rc = cli.main(["task", "cross-model", "--source", tiny_dir, "--target", tiny_dir, "--data", DEMO_CORPUS,
                   "--n-train", "30", "--n-eval", "5", "--source-layers", "1", "--target-layers", "1,3",
                   "--out", str(out), "--no-progress"])
    assert rc == 0 and "prec1" in capsys.readouterr().out
    res = ss.tasks.TaskResult.load(out)
    assert res.pairs() == [(1, 1), (1, 3)] and (res.grid("prec1").loc[1, 1] == 1.0)
    assert os.path.getsize(out / "prec1.png") > 0
    rc = cli.main(["task", "cross-model", "--source", tiny_dir, "--target", str(tmp_path / "none"),
                   "--out", str(tmp_path / "o2")])
    assert rc == 2 and "no such model folder" in capsys.readouterr().err
