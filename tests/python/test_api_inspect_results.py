"""model.inspect (a DataFrame of top-k tokens per layer and method) and Results from a real
evaluation through save / load (JSON and msgpack)."""
import numpy as np
import pytest

import simplescope as ss

METHODS = ("logitlens", "patchscope", "simplescope")


@pytest.mark.parametrize("k", [1, 4])
def test_inspect_columns_and_rows(model, k):
    text = "The quick brown fox jumps over the lazy dog."
    df = model.inspect(text, k=k)
    assert list(df.columns) == ["layer", "method", "rank", "token_id", "token", "prob"]
    L = model.n_layers
    for m in METHODS:
        sub = df[df.method == m]
        assert sorted(sub.layer.unique()) == list(range(L)), m
        for l in range(L):
            rows = sub[sub.layer == l]
            assert list(rows["rank"]) == list(range(k)), f"{m} layer {l}"
            assert (np.diff(rows.prob.to_numpy()) <= 1e-7).all(), f"{m} layer {l}: probs not descending"
    src = df[df.method == "source"]
    assert len(src) == k and (src.layer == L).all()
    assert ((df.prob > 0) & (df.prob <= 1)).all()
    assert df.attrs["position"] == len(model.tokenize(text, prepend_bos=True)) - 1
    # token strings are the tokenizer's; the last layer of every method predicts the source top-1
    assert list(df.token) == model.to_str_tokens(df.token_id.to_numpy())
    top = int(src[src["rank"] == 0].token_id.iloc[0])
    for m in METHODS:
        got = int(df[(df.method == m) & (df.layer == L - 1) & (df["rank"] == 0)].token_id.iloc[0])
        assert got == top, f"{m} at the last layer: top-1 {got}, source {top}"


def test_inspect_agrees_with_evaluate(model):
    text = "Hello world, this is a longer test sentence."
    n = len(model.tokenize(text, prepend_bos=True))
    p = n // 2
    df = model.inspect(text, k=1, position=p, layers=[0, 2])
    r = model.evaluate([text], positions=[p], layers=[0, 2], progress=False)
    for m in METHODS:
        for i, l in enumerate([0, 2]):
            top = int(df[(df.method == m) & (df.layer == l)].token_id.iloc[0])
            assert top == r.per_example(m)["patched_top1"][0, i], f"{m} layer {l}"


@pytest.mark.parametrize("kind", ["dir", "json", "msgpack"])
def test_results_save_load_round_trip(model, prompts, tmp_path, kind):
    res = model.evaluate(prompts, progress=False)
    path = {"dir": tmp_path / "out", "json": tmp_path / "r.json", "msgpack": tmp_path / "r.msgpack"}[kind]
    written = res.save(path)
    assert all(__import__("os").path.exists(p) for p in written)
    back = ss.Results.load(path)
    assert back.allclose(res), f"{kind}: loaded results differ"
    for m in METHODS:
        for f, a in res.per_example(m).items():
            b = back.per_example(m)[f]
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), f"{kind} {m}.{f}"
    assert back.meta["seed"] == 42 and back.meta["positions"] == "random"
    df = back.to_pandas()
    assert len(df) == len(METHODS) * model.n_layers
