"""python -m simplescope eval / demo end to end on tiny models: files written, PNGs decode,
results.json equals what the API returns for the same settings; user errors exit 2 with one line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import simplescope as ss
from simplescope import __main__ as cli
from conftest import PYTHON_DIR

METHODS = ["logitlens", "patchscope", "simplescope"]


def run_cli(*args, env=None, timeout=300):
    e = dict(os.environ, PYTHONPATH=PYTHON_DIR, MPLBACKEND="Agg")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "simplescope", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, prompts):
    p = tmp_path_factory.mktemp("cli-data") / "docs.jsonl"
    with open(p, "w") as f:
        for t in prompts:
            f.write(json.dumps({"text": t, "meta": {"pile_set_name": "test"}}) + "\n")
    return str(p)


def check_outputs(out):
    import matplotlib.image as mpimg

    for name in ("results.json", "results.msgpack", "prec1.png", "surprisal.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    for name in ("prec1.png", "surprisal.png"):
        img = mpimg.imread(os.path.join(out, name))
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, (name, img.shape)
        assert img.std() > 0, f"{name} is blank"
    a, b = ss.Results.load(os.path.join(out, "results.json")), ss.Results.load(os.path.join(out, "results.msgpack"))
    assert a.allclose(b), "results.json and results.msgpack differ"
    return b


def test_eval_preset_seed_matches_api(tiny_dir, model, data_file, prompts, tmp_path):
    out = str(tmp_path / "out")
    r = run_cli("eval", "--model", tiny_dir, "--data", data_file, "--preset", "seed", "--out", out)
    assert r.returncode == 0, r.stderr
    res = check_outputs(out)
    want = model.evaluate(prompts, seed=42, positions="notebook", prepend_bos=True, progress=False)
    # the CLI runs with torch's default thread count, this process with one thread: GEMM results
    # differ in the last bits between thread counts
    assert res.allclose(want, rtol=1e-5, atol=1e-6, check_meta=False), "CLI results differ from model.evaluate"
    assert res.meta["preset"] == "seed" and res.meta["prepend_bos"] is True and res.meta["seed"] == 42
    assert res.meta["positions"] == "notebook"
    assert res.meta["data"] == os.path.abspath(data_file)
    # the per-layer table is printed
    assert want.table() in r.stdout, r.stdout
    assert "simplescope prec1" in r.stdout


def test_eval_overrides_match_api(tiny_dir, model, data_file, prompts, tmp_path):
    out = str(tmp_path / "out2")
    r = run_cli("eval", "--model", tiny_dir, "--data", data_file, "--methods", "logitlens,simplescope",
                "--layers", "1-2", "--positions", "random", "--seed", "5", "--no-bos", "--max-docs", "4",
                "--no-progress", "--out", out)
    assert r.returncode == 0, r.stderr
    res = check_outputs(out)
    want = model.evaluate(prompts[:4], methods=["logitlens", "simplescope"], layers=[1, 2], seed=5,
                          prepend_bos=False, progress=False)
    assert res.methods == ["logitlens", "simplescope"] and res.layers == [1, 2] and res.n_prompts == 4
    # the CLI runs with torch's default thread count, this process with one thread: GEMM results
    # differ in the last bits between thread counts
    assert res.allclose(want, rtol=1e-5, atol=1e-6, check_meta=False)


def test_eval_paper_preset_settings_apply(tiny_dir, model, tmp_path):
    """The paper preset selects documents 10 000 ... 11 999 of its shuffle and evaluates them
    without BOS; on a file with 10 006 short documents that leaves 6."""
    data = tmp_path / "many.jsonl"
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    with open(data, "w") as f:
        for i in range(10006):
            f.write(json.dumps({"text": f"Document {i}: {words[i % 8]} {words[(i * 7) % 8]} and {i * 37 % 1000}."}) + "\n")
    texts = ss.read_corpus(str(data), preset="paper")
    assert len(texts) == 6
    out = str(tmp_path / "p")
    r = run_cli("eval", "--model", tiny_dir, "--data", str(data), "--preset", "paper", "--no-progress", "--out", out)
    assert r.returncode == 0, r.stderr
    res = check_outputs(out)
    want = model.evaluate(texts, prepend_bos=False, seed=42, positions="paper", progress=False)
    assert res.meta["prepend_bos"] is False and res.meta["preset"] == "paper" and res.meta["positions"] == "paper"
    # the CLI runs with torch's default thread count, this process with one thread: GEMM results
    # differ in the last bits between thread counts
    assert res.allclose(want, rtol=1e-5, atol=1e-6, check_meta=False)
    # too small a file for the preset: one line, exit 2
    small = tmp_path / "small.jsonl"
    small.write_text('{"text": "hello world"}\n')
    r = run_cli("eval", "--model", tiny_dir, "--data", str(small), "--preset", "paper", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no documents" in r.stderr, r.stderr


@pytest.mark.parametrize("case", ["missing model", "model is a file", "bad data", "missing data",
                                  "unknown preset", "unknown method", "unknown device", "bad layers",
                                  "layer out of range", "bad positions"])
def test_user_errors_exit_2_with_one_line(case, tiny_dir, data_file, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    args = {"model": tiny_dir, "data": data_file, "out": str(tmp_path / "o")}
    extra, want = [], None
    if case == "missing model":
        args["model"], want = str(tmp_path / "no-model"), "no-model"
    elif case == "model is a file":
        args["model"], want = data_file, "not a folder"
    elif case == "bad data":
        args["data"], want = str(bad), "bad.jsonl: line 1: not valid JSON"
    elif case == "missing data":
        args["data"], want = str(tmp_path / "nothing.jsonl"), "nothing.jsonl"
    elif case == "unknown preset":
        extra, want = ["--preset", "fancy"], '"fancy"'
    elif case == "unknown method":
        extra, want = ["--methods", "logitlens,magic"], "'magic'"
    elif case == "unknown device":
        extra, want = ["--device", "tpu"], '"tpu"'
    elif case == "bad layers":
        extra, want = ["--layers", "one"], "'one'"
    elif case == "layer out of range":
        extra, want = ["--layers", "9"], "layer 9 out of range"
    elif case == "bad positions":
        extra, want = ["--positions", "middle"], "'middle'"
    argv = ["eval", "--model", args["model"], "--data", args["data"], "--out", args["out"], "--no-progress"] + extra
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (case, err)
    assert err and err[-1].startswith("simplescope: error:") and want in err[-1], (case, err)
    assert not any("Traceback" in line for line in err)


def test_user_error_in_a_process_has_no_traceback(tmp_path, data_file):
    r = run_cli("eval", "--model", str(tmp_path / "nope"), "--data", data_file, "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"simplescope: error: model folder {tmp_path / 'nope'} does not exist"], r.stderr


def test_parse_layers():
    assert cli.parse_layers(None) is None and cli.parse_layers("all") is None
    assert cli.parse_layers("0-2,5") == [0, 1, 2, 5]
    for bad in ("3-1", "a", "1-", ","):
        with pytest.raises(cli.UserError):
            cli.parse_layers(bad)


# ------------------------------------------------------------------------------ demo

def test_demo_model_creation_is_atomic(tmp_path, monkeypatch):
    calls = []

    def broken(path):
        calls.append(path)
        open(os.path.join(path, "config.json"), "w").write("{}")  # half written, then killed
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_write_demo_model", broken)
    with pytest.raises(KeyboardInterrupt):
        cli.ensure_demo_model(str(tmp_path))
    assert calls and os.listdir(tmp_path) == [], f"left behind: {os.listdir(tmp_path)}"

    final = cli.demo_model_dir(str(tmp_path))
    os.makedirs(final)  # a folder without the completion marker is not trusted
    open(os.path.join(final, "config.json"), "w").write("{}")

    def fine(path):
        open(os.path.join(path, cli.DEMO_MARKER), "w").write("{}")

    monkeypatch.setattr(cli, "_write_demo_model", fine)
    assert cli.ensure_demo_model(str(tmp_path)) == final
    assert os.listdir(final) == [cli.DEMO_MARKER]
    assert os.listdir(tmp_path) == [os.path.basename(final)]


def test_demo_end_to_end(tmp_path):
    cache = tmp_path / "cache"
    out = str(tmp_path / "demo")
    r = run_cli("demo", "--out", out, "--max-docs", "3", "--layers", "0,7", "--no-progress",
                env={"SIMPLESCOPE_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    assert "making the demo model" in r.stderr
    res = check_outputs(out)
    assert res.n_prompts == 3 and res.layers == [0, 7] and res.methods == METHODS
    assert res.meta["preset"] == "seed" and res.meta["prepend_bos"] is True and res.meta["seed"] == 42
    assert res.meta["config"]["n_layer"] == 8 and res.meta["config"]["n_embd"] == 256
    for m in METHODS:  # layer 7 is the last: every method reproduces the source prediction
        assert (res.per_example(m)["prec1"][:, 1] == 1).all(), m
    assert res.table() in r.stdout
    entries = os.listdir(cache)
    assert len(entries) == 1 and entries[0].startswith("demo-gptj-"), entries
    # the second run reuses the cached model
    r2 = run_cli("demo", "--out", out, "--max-docs", "3", "--layers", "0,7", "--no-progress",
                 env={"SIMPLESCOPE_CACHE": str(cache)})
    assert r2.returncode == 0 and "making the demo model" not in r2.stderr, r2.stderr
    assert ss.Results.load(out).allclose(res, check_meta=False)
