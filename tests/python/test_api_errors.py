"""Bad input gets a clear Python exception whose message names the thing; internal errors
(a Go panic, an ATen failure) reach Python as exceptions and leave the library usable."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import simplescope as ss
from simplescope import _native
from conftest import PYTHON_DIR


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "good.jsonl").write_text('{"text": "hello world"}\n{"text": "second doc"}\n')
    (d / "bad.jsonl").write_text("this is not json\n")
    (d / "notext.jsonl").write_text('{"title": "no text field"}\n')
    return d


def test_missing_model_folder(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        ss.load(missing)


def test_model_path_is_a_file(corpus_files):
    with pytest.raises(ValueError, match="good.jsonl.*not a folder"):
        ss.load(str(corpus_files / "good.jsonl"))


@pytest.mark.parametrize("device,match", [("tpu", "unknown device \"tpu\""), ("cuda:7", "cuda:7")])
def test_unknown_device(tiny_dir, device, match):
    with pytest.raises(ss.InputError, match=match):
        ss.load(tiny_dir, device=device)


def test_unknown_dtype(tiny_dir):
    with pytest.raises(ss.InputError, match="int8"):
        ss.load(tiny_dir, dtype="int8")


@pytest.mark.parametrize("name,match", [("bad.jsonl", r"bad\.jsonl: line 1: not valid JSON"),
                                        ("notext.jsonl", r"notext\.jsonl")])
def test_data_file_not_jsonl(corpus_files, name, match):
    with pytest.raises(ss.InputError, match=match):
        ss.read_corpus(str(corpus_files / name))


def test_missing_data_file(corpus_files):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        ss.read_corpus(str(corpus_files / "missing.jsonl"))


def test_unknown_preset(corpus_files):
    with pytest.raises(ss.InputError, match='preset "nope".*paper, seed'):
        ss.read_corpus(str(corpus_files / "good.jsonl"), preset="nope")


def test_read_corpus_ok(corpus_files):
    assert ss.read_corpus(str(corpus_files / "good.jsonl")) == ["hello world", "second doc"]
    assert ss.read_corpus(str(corpus_files / "good.jsonl"), max_docs=1) == ["hello world"]


def test_empty_prompt_list(model):
    with pytest.raises(ValueError, match="no prompts"):
        model.evaluate([], progress=False)


def test_empty_string_prompt_is_skipped_not_an_error(model):
    res = model.evaluate(["fine", ""], prepend_bos=False, progress=False)
    assert res.meta["skipped"] == {"empty": [1], "too_short": []}
    assert np.isnan(res.per_example("simplescope")["prec1"][1]).all()


@pytest.mark.parametrize("kw, match", [
    (dict(positions="first"), r"positions 'first': unknown mode \(known: random, notebook, paper, last"),
    (dict(seed=2 ** 63), r"seed 9223372036854775808 is outside the int64 range"),
    (dict(seed=-(2 ** 63) - 1), r"seed -9223372036854775809 is outside the int64 range"),
    (dict(seed=1.5), r"seed must be an integer"),
    (dict(seed=True), r"seed must be an integer"),
])
def test_bad_settings_raise_before_any_work(model, kw, match):
    # the prompts are bad too (a mix of texts and tokens): the settings are checked first
    with pytest.raises(ValueError, match=match):
        model.evaluate(["fine", [1, 2]], progress=False, **kw)


def test_unknown_preset_in_evaluate(model):
    with pytest.raises(ss.InputError, match='preset: unknown dataset preset "nope"'):
        model.evaluate(["fine"], preset="nope", progress=False)


def test_unknown_method(model):
    with pytest.raises(ss.InputError, match='unknown method "nope"'):
        model.evaluate(["fine"], methods=["logitlens", "nope"], progress=False)


@pytest.mark.parametrize("layer", [4, 100, -1])
def test_layer_out_of_range(model, layer):
    with pytest.raises(ss.InputError, match=f"layer {layer} out of range"):
        model.evaluate(["fine text"], layers=[layer], progress=False)


@pytest.mark.parametrize("pos", [[50], [-1]])
def test_position_out_of_range(model, pos):
    with pytest.raises(ss.InputError, match=f"position {pos[0]} for prompt 0 out of range"):
        model.evaluate(["fine text"], positions=pos, progress=False)


def test_positions_wrong_shape(model):
    with pytest.raises(ss.InputError, match="positions"):
        model.evaluate(["fine text"], positions=[1, 2], progress=False)


def test_target_without_placeholder(model):
    meth = {"name": "mine", "target": "cat -> cat", "placeholder": "?"}
    with pytest.raises(ss.InputError, match='"mine".*does not contain its placeholder "\\?"'):
        model.evaluate(["fine text"], methods=[meth], progress=False)


def test_token_id_out_of_vocab(model):
    with pytest.raises(ss.InputError, match="id 50400 out of range"):
        model.run_with_cache([50256, 50400])
    with pytest.raises(ss.InputError, match="id 50400 out of range"):
        model.evaluate([[1, 50400]], progress=False)
    with pytest.raises(ss.InputError, match="more than the model's context of 128"):
        model.run_with_cache(list(range(200)))


def test_debug_panic_is_off_by_default(monkeypatch):
    monkeypatch.delenv("SIMPLESCOPE_DEBUG_PANIC", raising=False)
    with pytest.raises(ss.InputError, match='unknown method "debug.panic".*SIMPLESCOPE_DEBUG_PANIC=1'):
        _native.lib().call(None, "debug.panic")


def test_debug_panic_is_internal_error(model, monkeypatch):
    # read by the library at call time (C getenv), so setting it after the library loaded works
    monkeypatch.setenv("SIMPLESCOPE_DEBUG_PANIC", "1")
    with pytest.raises(ss.InternalError, match="deliberate panic"):
        _native.lib().call(None, "debug.panic")
    # the library still works afterwards
    assert model.tokenize("Hello") == [15496]
    assert model.evaluate(["still works"], progress=False).n_prompts == 1


def _copy_model(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_weights_with_wrong_shape(tiny_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy_model(tiny_dir, tmp_path / "bad")
    f = os.path.join(d, "model.safetensors")
    w = load_file(f)
    key = "transformer.h.1.attn.q_proj.weight"
    w[key] = w[key][:, :32].contiguous()
    save_file(w, f, metadata={"format": "pt"})
    with pytest.raises(ss.InputError) as ei:
        ss.load(d)
    msg = str(ei.value)
    assert key in msg and "model.safetensors" in msg and "[64 32]" in msg and "[64 64]" in msg, msg


def test_config_inconsistent(tiny_dir, tmp_path):
    d = _copy_model(tiny_dir, tmp_path / "badcfg")
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    cfg["n_head"] = 5
    json.dump(cfg, open(p, "w"))
    with pytest.raises(ss.InputError, match="n_head = 5"):
        ss.load(d)


def _run_child(code, timeout=120):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_aten_error_reaches_python(tiny_dir):
    """An allocation ATen refuses (the address space is capped in a child process) surfaces as
    OutOfMemory (a MemoryError) carrying ATen's own message, and the model works afterwards."""
    r = _run_child(f"""
        import resource, simplescope as ss
        m = ss.load({tiny_dir!r})
        m.run_with_cache([1, 2, 3])
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 29), resource.RLIM_INFINITY))
        try:
            m.run_with_cache([[1] * 128] * 64)   # logits alone: 64*128*50400*4 bytes = 1.65 GB
            print("NO ERROR")
        except ss.OutOfMemory as e:
            assert isinstance(e, MemoryError)
            print("ERROR:", e)
        logits, _ = m.run_with_cache([1, 2, 3])
        print("AFTER:", tuple(logits.shape))
    """)
    assert r.returncode == 0, f"child failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}"
    assert "ERROR:" in r.stdout and "DefaultCPUAllocator" in r.stdout, r.stdout
    assert "AFTER: (1, 3, 50400)" in r.stdout, r.stdout


def test_huge_n_positions_is_an_error_not_a_crash(tiny_dir, tmp_path):
    """A config.json with an absurd n_positions must give an exception, not abort the process.
    (Run in a child with its address space capped at 16 GB so a failure cannot hurt the machine.)"""
    d = _copy_model(tiny_dir, tmp_path / "hugepos")
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    cfg["n_positions"] = 2 ** 40
    json.dump(cfg, open(p, "w"))
    r = _run_child(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, resource.RLIM_INFINITY))
        import simplescope as ss
        try:
            ss.load({d!r})
            print("LOADED")
        except Exception as e:
            print("ERROR:", type(e).__name__, str(e).splitlines()[0])
    """)
    assert r.returncode == 0 and "ERROR:" in r.stdout, (
        f"loading a config with n_positions = 2**40 killed the process (rc {r.returncode}):\n"
        f"{r.stdout}\n{r.stderr[:1500]}")
