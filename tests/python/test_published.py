"""The published GPT-J 6B figures shipped as package data, Results.compare_published and
`python -m simplescope compare` (no model needed: results are built from the figures themselves)."""
import json
import os

import numpy as np
import pytest

from simplescope import Results, published
from simplescope.__main__ import main

N = published.N_DOCS


def results_like_published(n_layer=28, shift=0.0):
    """Results whose per-layer means are the published ones (at equal relative depth for another
    depth), over 698 prompts: prec1 exactly k/698, surprisal constant per layer (+ shift)."""
    pub = published.load()
    data = {}
    for m in ("logitlens", "patchscope", "simplescope"):
        x = np.arange(n_layer) / (n_layer - 1) * 27
        p = np.interp(x, np.arange(28), pub[m]["prec1"])
        s = np.interp(x, np.arange(28), pub[m]["surprisal"]) + shift
        k = np.rint(p * N).astype(int)
        prec1 = (np.arange(N)[:, None] < k[None, :]).astype(np.float32)
        z = np.zeros((N, n_layer), np.int64)
        data[m] = {"prec1": prec1, "surprisal": np.repeat(s[None].astype(np.float32), N, 0),
                   "paper_surprisal": np.zeros((N, n_layer), np.float32), "position": z, "source_top1": z,
                   "patched_top1": z}
    return Results(list(data), list(range(n_layer)), data, meta={"config": {"n_layer": n_layer}})


def test_published_data_shipped_with_the_package():
    here = published.DATA_DIR
    assert os.path.isfile(os.path.join(here, "README.md"))
    pub = published.load()
    assert set(pub) == {"logitlens", "patchscope", "simplescope"}
    for m, theirs in published.NAMES.items():
        with open(os.path.join(here, f"patchscope_{theirs}.json")) as f:
            raw = json.load(f)
        assert len(raw) == 28 and pub[m]["prec1"].shape == (28,)
        assert np.allclose(pub[m]["prec1"], [r["prec1"] for r in raw])
        # every published prec1 is a count over the 698 documents of the seed preset
        k = pub[m]["prec1"] * N
        assert np.allclose(k, np.rint(k), atol=1e-3), f"{m}: prec1 is not k/{N}"
    # simplescope ("logitscope" there) beats the logit lens at every layer but the last
    assert (pub["simplescope"]["prec1"][:-1] > pub["logitlens"]["prec1"][:-1]).all()


def test_compare_by_layer_on_28_layers(capsys):
    res = results_like_published(28, shift=0.5)
    df = res.compare_published(plot=False)
    out = capsys.readouterr().out
    assert df.attrs["by"] == "layer" and len(df) == 3 * 28
    assert np.allclose(df.diff_prec1, 0, atol=1e-6) and np.allclose(df.diff_surprisal, 0.5, atol=1e-5)
    assert (df.published_layer == df.layer).all()
    assert "simplescope (published as \"logitscope\")" in out and "NOT A DIRECT" not in out
    assert (df[df.layer < 27].prec1_2se > 0).all()  # at the last layer prec1 is 1: no spread


def test_compare_other_depth_is_by_relative_depth_and_says_so(capsys):
    res = results_like_published(8)
    df = res.compare_published(plot=False)
    out = capsys.readouterr().out
    assert df.attrs["by"] == "depth" and "NOT A DIRECT COMPARISON: this model has 8 layers" in out
    g = df[df.method == "logitlens"]
    assert np.allclose(g.published_layer, np.arange(8) * 27 / 7)
    assert np.allclose(g.diff_prec1, 0, atol=1 / N) and np.allclose(g.diff_surprisal, 0, atol=1e-5)
    with pytest.raises(ValueError, match=r"GPT-J 6B's 28 layers; these results come from a model of 8 layers"):
        res.compare_published(by="layer", plot=False)


def test_compare_methods_and_errors():
    res = results_like_published(28)
    df = published.compare(res, methods="simplescope")
    assert set(df.method) == {"simplescope"}
    with pytest.raises(ValueError, match="no published figures for method 'grid'"):
        published.compare(res, methods=["grid"])
    with pytest.raises(ValueError, match="by='rows'"):
        published.compare(res, by="rows")


def test_cli_compare(tmp_path, capsys):
    res = results_like_published(8)
    res.save(tmp_path / "run")
    assert main(["compare", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "NOT A DIRECT COMPARISON" in out and "patchscope" in out
    for name in ("compare.png", "compare.csv"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert main(["compare", str(tmp_path / "run"), "--by", "layer"]) == 2
    assert "28 layers" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
