"""The GPU behaviours of the Python API, checked on the CPU: CUDA initialised through torch
before the core touches a device, torch's memory fraction sent with each request, models on
several devices (here two CPU replicas) giving one device's results, deterministic batch sizes,
and the failing batch halved on its first retry (out of memory injected through the shim's test
hook)."""
import ctypes

import numpy as np
import pytest
import torch

import simplescope as ss
from simplescope import _native
from simplescope import model as model_mod


def test_cuda_initialised_through_torch_before_the_core(tiny_dir, monkeypatch):
    calls = []
    lib = _native.lib()
    real_load = lib.load

    def fake_init():
        calls.append("torch.cuda.init")

    def load(path, device, dtype):
        calls.append(f"core load {device}")
        return real_load(path, device, dtype)

    monkeypatch.setattr(torch.cuda, "init", fake_init)
    monkeypatch.setattr(lib, "load", load)
    with pytest.raises(ss.InputError, match="cuda"):  # no CUDA device on this machine
        ss.load(tiny_dir, device="cuda")
    assert calls == ["torch.cuda.init", "core load cuda"]
    calls.clear()
    ss.load(tiny_dir, device="cpu").close()
    assert calls == ["core load cpu"]  # CUDA is left alone on the CPU


def test_cuda_that_cannot_start_is_an_input_error(tiny_dir, monkeypatch):
    def broken():
        raise RuntimeError("Found no NVIDIA driver on your system")

    monkeypatch.setattr(torch.cuda, "init", broken)
    with pytest.raises(ss.InputError, match="cuda:1.*NVIDIA driver"):
        ss.load(tiny_dir, device="cuda:1")


def test_memory_fraction_sent_for_cuda_models(model, monkeypatch):
    assert model._with_memory_fraction({"a": 1}) == {"a": 1}  # a CPU model sends none
    monkeypatch.setattr(model, "_cuda_index", 1)
    seen = []
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda i: seen.append(i) or 0.25)
    assert model._with_memory_fraction({"a": 1}) == {"a": 1, "memory_fraction": 0.25}
    assert seen == [1]


def test_device_names():
    assert model_mod._devices("cuda") == ["cuda"]
    assert model_mod._devices(["cuda:0", " cuda:1"]) == ["cuda:0", "cuda:1"]
    assert model_mod._cuda_index("cuda") == 0 and model_mod._cuda_index("cuda:3") == 3
    for bad in ([], [""], [0]):
        with pytest.raises(ValueError, match="device"):
            model_mod._devices(bad)


@pytest.fixture(scope="module")
def two(tiny_dir):
    m = ss.load(tiny_dir, device=["cpu", "cpu"])
    yield m
    m.close()


def test_two_devices_give_one_devices_results(model, two, prompts):
    assert two.config["devices"] == ["cpu", "cpu"]
    a = model.evaluate(prompts, chunk_prompts=2, progress=False)
    b = two.evaluate(prompts, chunk_prompts=2, progress=False)
    for m in a.methods:
        for k, v in a.per_example(m).items():
            np.testing.assert_array_equal(v, b.per_example(m)[k], err_msg=f"{m} {k}")
    vecs = model.hidden_states(["The cat sat on the mat"] * 7, layer=1)
    targets = ["Hello world, this is", "1 2 3 4"]
    for kw in ({}, {"position": [-1, 1] * 3 + [-1]}):
        pa = model.patch(targets * 3 + targets[:1], vecs, layer=[0, 2, 3, 1, 0, 2, 3], progress=False, **kw)
        pb = two.patch(targets * 3 + targets[:1], vecs, layer=[0, 2, 3, 1, 0, 2, 3], progress=False, **kw)
        assert torch.equal(pa.logits, pb.logits)
    ga = model.generate(targets * 2, vecs[:4], layer=1, max_new_tokens=4, progress=False)
    gb = two.generate(targets * 2, vecs[:4], layer=1, max_new_tokens=4, progress=False)
    assert ga.tokens == gb.tokens


def test_deterministic_keyword(model, prompts):
    a = model.evaluate(prompts[:3], deterministic=True, progress=False)
    b = model.evaluate(prompts[:3], progress=False)
    np.testing.assert_array_equal(a.per_example("simplescope")["surprisal"], b.per_example("simplescope")["surprisal"])
    vecs = model.hidden_states(["a b c"], layer=0)
    p = model.patch("x y z", vecs, layer=0, deterministic=True, progress=False)
    assert p.logits.shape[0] == 1
    g = model.generate("x y z", vecs, layer=0, max_new_tokens=2, deterministic=True, progress=False)
    assert len(g.tokens[0]) <= 2


def test_injected_oom_halves_the_failing_batch(model):
    """The shim's test hook (sst_debug_oom_rows) makes linear fail as out of memory above 12
    rows: the 20-row continuation batch fails once, runs again as two halves, and the results are
    those without the fault."""
    texts = [f"Prompt {i} of the halving test." for i in range(20)]
    kw = dict(methods=["simplescope"], layers=[0], patch_rows=20, batch_tokens=100, progress=False)
    want = model.evaluate(texts, **kw)
    shim = _native.lib().shim
    shim.sst_debug_oom_rows.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
    shim.sst_debug_oom_rows.restype = None
    before, after = ctypes.c_int64(), ctypes.c_int64()
    shim.sst_debug_oom_rows(12, ctypes.byref(before))
    try:
        got = model.evaluate(texts, **kw)
    finally:
        shim.sst_debug_oom_rows(0, ctypes.byref(after))
    assert after.value - before.value == 1
    assert got.meta["stats"]["oom_retries"] == 1
    np.testing.assert_allclose(got.per_example("simplescope")["surprisal"],
                               want.per_example("simplescope")["surprisal"], atol=1e-5)
