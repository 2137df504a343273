"""Tests of simplescope.results / results_io / plots on synthetic arrays from a seeded RNG.

Expected means are recomputed here with plain Python loops (statistics.fmean over the non-NaN
values), independently of the NaN-aware numpy code in results.py.
"""

import json
import math
import os
import statistics

import numpy as np
import pytest

import simplescope.results as R
import simplescope.results_io as RIO
from simplescope.results import Results, UnknownNameError

STANDARD = ("logitlens", "patchscope", "simplescope")
P, LAYERS, TARGETS = 11, [0, 1, 2, 3, 4, 5], [0, 3, 5]


def _metrics(rng, shape, nan_frac=0.15):
    mask = rng.random(shape) < nan_frac
    prec1 = (rng.random(shape) < 0.6).astype(np.float32)
    surp = rng.exponential(2.5, shape).astype(np.float32)
    paper = rng.exponential(1.5, shape).astype(np.float32)
    for a in (prec1, surp, paper):
        a[mask] = np.nan
    return prec1, surp, paper


def make_results(seed=0, methods=STANDARD, grid=None, inf=False):
    rng = np.random.default_rng(seed)
    L = len(LAYERS)
    data, tl = {}, {}
    for m in methods:
        prec1, surp, paper = _metrics(rng, (P, L))
        data[m] = {
            "prec1": prec1, "surprisal": surp, "paper_surprisal": paper,
            "position": rng.integers(0, 60, (P, L)).astype(np.int64),
            "source_top1": rng.integers(0, 50400, (P, L)).astype(np.int64),
            "patched_top1": rng.integers(0, 50400, (P, L)).astype(np.int64),
        }
    data[methods[0]]["prec1"][:, 2] = np.nan  # a layer nobody computed: mean NaN, n 0
    if inf:
        data[methods[-1]]["surprisal"][0, 1] = np.inf
        data[methods[-1]]["paper_surprisal"][1, 1] = -np.inf
    if grid:
        shape = (P, L, len(TARGETS))
        prec1, surp, paper = _metrics(rng, shape)
        data[grid] = {
            "prec1": prec1, "surprisal": surp, "paper_surprisal": paper,
            "position": rng.integers(0, 60, (P, L)).astype(np.int64),  # per source layer only
            "source_top1": rng.integers(0, 50400, (P, L)).astype(np.int64),
            "patched_top1": rng.integers(0, 50400, shape).astype(np.int64),
        }
        tl[grid] = list(TARGETS)
    meta = {"model": "/models/gptj-tiny", "dtype": "float32", "n_prompts": P, "seed": seed,
            "prepend_bos": True, "timing": {"total_s": 1.25, "nan": float("nan")},
            "methods": {"simplescope": {"target_prompt": "?", "placeholder": 0}},
            "np_scalar": np.float32(0.5), "tuple": (1, 2)}
    all_methods = list(methods) + ([grid] if grid else [])
    return Results(all_methods, LAYERS, data, meta, tl or None), data


def ref_mean(a):
    """(mean, count) over axis 0 with Python loops, NaN when no value."""
    flat = a.reshape(a.shape[0], -1)
    means, counts = [], []
    for j in range(flat.shape[1]):
        vals = [float(x) for x in flat[:, j] if not math.isnan(float(x))]
        means.append(statistics.fmean(vals) if vals else float("nan"))
        counts.append(len(vals))
    return np.array(means).reshape(a.shape[1:]), np.array(counts).reshape(a.shape[1:])


def assert_close(got, want, what, rtol=1e-12):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    same_nan = np.isnan(got) == np.isnan(want)
    assert same_nan.all(), f"{what}: NaN pattern differs at {np.argwhere(~same_nan)[:3].tolist()}"
    ok = np.isnan(want) | np.isclose(got, want, rtol=rtol, atol=0)
    if not ok.all():
        i = tuple(np.argwhere(~ok)[0])
        diff = np.nanmax(np.abs(got - want))
        raise AssertionError(f"{what}: first mismatch at {i}: got {got[i]!r} want {want[i]!r}; max diff {diff}")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# ---------------------------------------------------------------------------- means and access

def test_means_match_independent_reference():
    res, data = make_results(1, grid="grid")
    assert res.n_prompts == P and res.layers == LAYERS and res.methods == list(STANDARD) + ["grid"]
    for m in res.methods:
        for metric in R.METRICS:
            want, _ = ref_mean(data[m][metric])
            got = getattr(res, metric)[m]
            assert got.shape == ((len(LAYERS),) if m != "grid" else (len(LAYERS), len(TARGETS)))
            assert_close(got, want, f"{m}.{metric}")
        _, n = ref_mean(data[m]["prec1"])
        assert np.array_equal(res.counts(m), n), f"{m}: counts {res.counts(m)} != {n}"
    assert math.isnan(res.prec1["logitlens"][2]) and res.counts("logitlens")[2] == 0
    assert list(res.prec1) == res.methods and len(res.surprisal) == len(res.methods)


def test_per_example_returns_the_arrays_read_only():
    res, data = make_results(2, grid="grid")
    for m in res.methods:
        ex = res.per_example(m)
        assert set(ex) == set(R.FIELDS)
        for f, a in ex.items():
            assert a.dtype == data[m][f].dtype and np.array_equal(a, data[m][f], equal_nan=True), f"{m}.{f}"
            with pytest.raises(ValueError):
                a[0, 0] = 1
    assert res.is_grid("grid") and not res.is_grid("simplescope")
    assert res.grid_methods == ["grid"] and res.line_methods == list(STANDARD)


@pytest.mark.parametrize("call", [
    lambda r: r.per_example("nope"),
    lambda r: r.prec1["nope"],
    lambda r: r.surprisal["nope"],
    lambda r: r.plot("prec1", method="nope"),
    lambda r: r.is_grid("nope"),
])
def test_unknown_method_names_it_and_the_known_ones(call):
    res, _ = make_results(3)
    with pytest.raises(KeyError) as ei:
        call(res)
    msg = str(ei.value)
    assert "'nope'" in msg and all(m in msg for m in STANDARD), msg


@pytest.mark.parametrize("call", [
    lambda r: r.plot("prec5"),
    lambda r: r.table("prec5"),
    lambda r: r.metric("prec5"),
])
def test_unknown_metric_names_it_and_the_known_ones(call):
    res, _ = make_results(3)
    with pytest.raises(ValueError) as ei:
        call(res)
    msg = str(ei.value)
    assert "'prec5'" in msg and all(m in msg for m in R.METRICS), msg
    assert isinstance(ei.value, UnknownNameError)


def test_constructor_rejects_bad_data():
    _, data = make_results(4)
    bad = {m: dict(d) for m, d in data.items()}
    bad["patchscope"]["surprisal"] = bad["patchscope"]["surprisal"][:, :3]
    with pytest.raises(ValueError, match=r"patchscope\.surprisal has shape \(11, 3\)"):
        Results(list(STANDARD), LAYERS, bad, {})
    bad = {m: dict(d) for m, d in data.items()}
    del bad["simplescope"]["position"]
    with pytest.raises(ValueError, match="'simplescope' lacks field 'position'"):
        Results(list(STANDARD), LAYERS, bad, {})
    with pytest.raises(ValueError, match="no data for method 'extra'"):
        Results(list(STANDARD) + ["extra"], LAYERS, data, {})
    bad = {m: dict(d) for m, d in data.items()}
    bad["logitlens"]["prec1"] = bad["logitlens"]["prec1"][:5]
    with pytest.raises(ValueError, match=r"logitlens\.(prec1 has 5 prompts but .* has 11|.* has 11 prompts but logitlens\.prec1 has 5)"):
        Results(list(STANDARD), LAYERS, bad, {})


def test_repr_is_a_short_summary():
    res, _ = make_results(5, grid="grid")
    r = repr(res)
    assert f"{P} prompts" in r and f"{len(LAYERS)} layers" in r and "simplescope" in r and "grid" in r
    assert len(r) < 300


# ---------------------------------------------------------------------------- pandas and table

def test_to_pandas_means():
    res, data = make_results(6, grid="grid")
    df = res.to_pandas()
    L, T = len(LAYERS), len(TARGETS)
    assert len(df) == 3 * L + L * T
    assert list(df.columns) == ["method", "layer", "target_layer", "prec1", "surprisal", "paper_surprisal", "n"]
    for m in STANDARD:
        sub = df[df.method == m]
        assert sub.layer.tolist() == LAYERS and sub.target_layer.isna().all()
        for metric in R.METRICS:
            assert_close(sub[metric].to_numpy(), ref_mean(data[m][metric])[0], f"df {m}.{metric}")
        assert sub.n.tolist() == ref_mean(data[m]["prec1"])[1].tolist()
    g = df[df.method == "grid"]
    want = ref_mean(data["grid"]["surprisal"])[0]
    for row in g.itertuples():
        i, j = LAYERS.index(row.layer), TARGETS.index(row.target_layer)
        assert_close(row.surprisal, want[i, j], f"grid ({row.layer}->{row.target_layer})")
    # without a grid method there is no target_layer column
    res2, _ = make_results(6)
    assert "target_layer" not in res2.to_pandas().columns and len(res2.to_pandas()) == 3 * L


def test_to_pandas_per_example():
    import pandas as pd

    res, data = make_results(7, grid="grid")
    df = res.to_pandas(per_example=True)
    L, T = len(LAYERS), len(TARGETS)
    assert len(df) == 3 * P * L + P * L * T
    for f in ("method", "prompt", "layer", "target_layer") + R.FIELDS:
        assert f in df.columns, f
    rng = np.random.default_rng(70)
    idx = df.set_index(["method", "prompt", "layer"])
    for _ in range(20):
        m, p, li = STANDARD[rng.integers(3)], int(rng.integers(P)), int(rng.integers(L))
        row = idx.loc[(m, p, LAYERS[li])]
        for f in R.FIELDS:
            got, want = row[f], data[m][f][p, li]
            assert (math.isnan(want) and pd.isna(got)) or got == want, f"{m} p{p} l{li} {f}: {got} != {want}"
    g = df[df.method == "grid"]
    for _ in range(20):
        p, li, ti = int(rng.integers(P)), int(rng.integers(L)), int(rng.integers(T))
        row = g[(g.prompt == p) & (g.layer == LAYERS[li]) & (g.target_layer == TARGETS[ti])]
        assert len(row) == 1
        assert row.patched_top1.item() == data["grid"]["patched_top1"][p, li, ti]
        assert row.position.item() == data["grid"]["position"][p, li]  # broadcast over target layers
        want = data["grid"]["prec1"][p, li, ti]
        assert (math.isnan(want) and math.isnan(row.prec1.item())) or row.prec1.item() == want


def test_table_lists_every_layer_and_method():
    res, data = make_results(8, grid="grid")
    text = res.table()
    lines = text.splitlines()
    header = lines[1]
    for m in STANDARD:
        assert f"{m} prec1" in header and f"{m} surprisal" in header
    rows = {ln.split()[0]: ln.split() for ln in lines[3:] if ln.split() and ln.split()[0].isdigit()}
    assert sorted(int(k) for k in rows) == LAYERS
    want = ref_mean(data["simplescope"]["prec1"])[0]
    col = 1 + STANDARD.index("simplescope")
    for i, layer in enumerate(LAYERS):
        assert rows[str(layer)][col] == f"{want[i]:.3f}", (layer, rows[str(layer)], want[i])
    assert rows["2"][1] == "nan"  # logitlens layer 2 never computed
    assert "grid" in lines[-1]
    only = res.table("paper_surprisal")
    assert "simplescope paper_surprisal" in only and "prec1" not in only.splitlines()[1]


# ---------------------------------------------------------------------------- files

def _assert_bit_identical(a: Results, b: Results):
    assert a.methods == b.methods and a.layers == b.layers and a.target_layers == b.target_layers
    assert a.n_prompts == b.n_prompts
    for m in a.methods:
        ea, eb = a.per_example(m), b.per_example(m)
        assert set(ea) == set(eb)
        for f in ea:
            assert ea[f].dtype == eb[f].dtype and ea[f].shape == eb[f].shape, (m, f, ea[f].dtype, eb[f].dtype)
            assert ea[f].tobytes() == eb[f].tobytes(), f"{m}.{f} differs after round trip"
    assert a.allclose(b, rtol=0)


@pytest.mark.parametrize("name", ["r.json", "r.msgpack", "outdir"])
def test_save_load_round_trip(tmp_path, name):
    res, _ = make_results(9, grid="grid", inf=True)
    path = tmp_path / name
    written = res.save(path)
    if name == "outdir":
        assert sorted(os.listdir(path)) == ["results.json", "results.msgpack"]
        assert len(written) == 2
        back_json = Results.load(path / "results.json")
        _assert_bit_identical(res, back_json)
    back = Results.load(path)
    _assert_bit_identical(res, back)
    assert back.meta["model"] == "/models/gptj-tiny" and back.meta["tuple"] == [1, 2]
    assert back.meta["np_scalar"] == 0.5
    if name.endswith(".json"):
        assert back.meta["timing"]["nan"] is None  # JSON has no NaN: null
    else:
        assert math.isnan(back.meta["timing"]["nan"])
    for m in res.methods:
        for metric in R.METRICS:
            assert_close(getattr(back, metric)[m], getattr(res, metric)[m], f"{m}.{metric} after load", rtol=0)
    umask = os.umask(0)
    os.umask(umask)
    for p in written:
        assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask, oct(os.stat(p).st_mode)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_json_is_strict_and_readable(tmp_path):
    res, data = make_results(10, grid="grid", inf=True)
    res.save(tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()

    def reject(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    doc = json.loads(text, parse_constant=reject)
    assert doc["methods"] == res.methods and doc["layers"] == LAYERS
    assert doc["target_layers"] == {"logitlens": None, "patchscope": None, "simplescope": None, "grid": TARGETS}
    for m in res.methods:
        for metric in R.METRICS:
            got = np.array([np.nan if v is None else v for v in np.ravel(doc["summary"][m][metric])], dtype=float)
            assert_close(got.reshape(res.prec1[m].shape), ref_mean(data[m][metric])[0], f"json summary {m}.{metric}")
        pe = doc["per_example"][m]["position"]
        assert pe["dtype"] == "int64" and pe["data"] == data[m]["position"].tolist()
    # one prompt's row per line for 2-D arrays, not one number per line
    assert text.count("\n") < 40 * P * len(res.methods)


def test_load_rejects_foreign_files(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"x\.json.*not a simplescope\.results file"):
        Results.load(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="neither"):
        Results.load(tmp_path)
    res, _ = make_results(11)
    with pytest.raises(ValueError, match=r"r\.txt"):
        res.save(tmp_path / "r.txt")


def _leftovers(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("name", ["r.json", "r.msgpack"])
def test_atomic_save_failing_replace_leaves_nothing(tmp_path, monkeypatch, name):
    res, _ = make_results(12)

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        res.save(tmp_path / name)
    assert _leftovers(tmp_path) == []


def test_atomic_save_failing_mid_json_keeps_old_file(tmp_path, monkeypatch):
    res, _ = make_results(13)
    target = tmp_path / "r.json"
    target.write_text("old contents")
    real = RIO._json_chunks
    written = []

    def failing_chunks(obj, depth):
        if depth > 0:  # the real encoder recurses through the module attribute
            yield from real(obj, depth)
            return
        for i, chunk in enumerate(real(obj, depth)):
            if i == 50:
                raise RuntimeError("interrupted mid-write")
            written.append(chunk)
            yield chunk

    monkeypatch.setattr(RIO, "_json_chunks", failing_chunks)
    with pytest.raises(RuntimeError, match="interrupted"):
        res.save(target)
    assert len(written) == 50  # the failure did happen after part of the file was written
    assert _leftovers(tmp_path) == ["r.json"] and target.read_text() == "old contents"


def test_atomic_save_failing_msgpack_in_directory(tmp_path, monkeypatch):
    import msgpack

    res, _ = make_results(14)

    def boom(*a, **k):
        raise RuntimeError("pack failed")

    monkeypatch.setattr(msgpack, "packb", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="pack failed"):
        res.save(out)
    assert _leftovers(out) == ["results.json"]  # the JSON, written first, is complete
    _assert_bit_identical(res, Results.load(out / "results.json"))


# ---------------------------------------------------------------------------- plots

def test_plot_lines_styles_and_data():
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    res, data = make_results(15, methods=STANDARD + ("fewshot2",), grid="grid")
    fig = res.plot("prec1")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == set(STANDARD) | {"fewshot2"}  # grid methods are not lines
    want = {"logitlens": ("--", "tab:blue"), "patchscope": (":", "tab:green"), "simplescope": ("-.", "tab:purple")}
    for m, (ls, color) in want.items():
        assert lines[m].get_linestyle() == ls, (m, lines[m].get_linestyle())
        assert to_rgba(lines[m].get_color()) == to_rgba(color), (m, lines[m].get_color())
    other = lines["fewshot2"]
    assert other.get_linestyle() == "-"
    assert to_rgba(other.get_color()) not in {to_rgba(c) for _, c in want.values()}
    for m, ln in lines.items():
        assert list(ln.get_xdata()) == LAYERS
        assert_close(ln.get_ydata(), ref_mean(data[m]["prec1"])[0], f"plotted {m}")
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "precision@1"
    assert ax.get_title() and ax.get_legend() is not None
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted(lines)
    fig2 = res.plot("surprisal")
    assert fig2.axes[0].get_ylabel() == "surprisal (nats)"


def test_plot_saves_png(tmp_path):
    import matplotlib.image as mpimg
    from PIL import Image

    res, _ = make_results(16)
    path = tmp_path / "prec1.png"
    res.plot("prec1", path=path)
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        w, h = im.size
    assert 500 < w < 1500 and 300 < h < 1000, (w, h)  # 7x4.5 in at 120 dpi, tight bbox
    arr = mpimg.imread(path)
    assert arr.shape[:2] == (h, w) and arr.std() > 0.01  # something was drawn
    assert _leftovers(tmp_path) == ["prec1.png"]


def test_plot_into_given_axes():
    import matplotlib.pyplot as plt

    res, _ = make_results(17)
    fig, ax = plt.subplots()
    out = res.plot("paper_surprisal", ax=ax)
    assert out is fig and len(ax.get_lines()) == 3


def test_plot_heatmap_for_grid(tmp_path):
    from matplotlib.image import AxesImage

    res, data = make_results(18, grid="grid")
    fig = res.plot("prec1", method="grid", path=tmp_path / "grid.png")
    ax = fig.axes[0]
    images = [c for c in ax.get_children() if isinstance(c, AxesImage)]
    assert len(images) == 1
    assert_close(np.ma.filled(images[0].get_array(), np.nan), ref_mean(data["grid"]["prec1"])[0], "heatmap")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "precision@1"  # the colorbar
    assert ax.get_xlabel() == "target layer" and ax.get_ylabel() == "source layer"
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(t) for t in TARGETS]
    assert os.path.getsize(tmp_path / "grid.png") > 1000
    # a single line method can be plotted alone
    one = res.plot("prec1", method="simplescope")
    assert [ln.get_label() for ln in one.axes[0].get_lines()] == ["simplescope"]


def test_zero_prompts_round_trip(tmp_path):
    L = len(LAYERS)
    empty = {f: np.zeros((0, L), dtype=np.float32 if f in R.METRICS else np.int64) for f in R.FIELDS}
    res = Results(["simplescope"], LAYERS, {"simplescope": empty}, {"n_prompts": 0})
    assert res.n_prompts == 0 and np.isnan(res.prec1["simplescope"]).all()
    assert res.counts("simplescope").tolist() == [0] * L
    assert len(res.to_pandas(per_example=True)) == 0 and len(res.to_pandas()) == L
    res.save(tmp_path)
    for name in ("results.json", "results.msgpack"):
        _assert_bit_identical(res, Results.load(tmp_path / name))
