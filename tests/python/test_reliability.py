"""Reliability of the Python package under faults (issue 7; docs/reliability.md):
a full disk while saving results, several threads evaluating on one model, Ctrl-C during an
evaluation. The tiny model is made here by core/gptj/testdata/hf_gptj.py (HF transformers)."""
import gc
import _thread
import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import simplescope as ss
from simplescope.results import Results

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOKENIZER_DIR = os.path.join(REPO, "python", "simplescope", "data", "tokenizer")
PROMPTS = ["The cat sat on the mat.", "1135 -> 1135", "Hello, world! It's", "Pi is 3.14159"]


@pytest.fixture(scope="module")
def rel_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability")
    script = os.path.join(REPO, "core", "gptj", "testdata", "hf_gptj.py")
    subprocess.run([sys.executable, script, str(out), "rel:16:2:2:4:50400:st:11"], check=True)
    mdir = os.path.join(out, "rel", "model")
    for name in os.listdir(TOKENIZER_DIR):  # the bundled tokenizer files, BOS named in its config
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(mdir, name))
    model = ss.load(mdir)
    yield model
    model.close()


def _listing(folder):
    return sorted(os.listdir(folder))


def test_full_disk_when_saving_results(rel_model, tmp_path):
    """A write that hits a full disk (RLIMIT_FSIZE: writes beyond the cap fail with EFBIG, as
    ENOSPC does on a full disk) raises OSError and leaves no partial results file: a file that
    existed keeps its old complete content, a new one is not created, no temp file remains."""
    old = rel_model.evaluate(PROMPTS, seed=1, progress=False)
    new = rel_model.evaluate(PROMPTS[::-1], seed=2, progress=False)
    existing = tmp_path / "existing"
    existing.mkdir()
    old_paths = old.save(existing)  # results.json + results.msgpack, complete
    old_bytes = {p: open(p, "rb").read() for p in old_paths}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cap = 512  # bytes; every results file is larger
    assert all(len(b) > cap for b in old_bytes.values())
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    errors = {}
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, hard))
        for name, target in [("existing dir", existing), ("fresh dir", fresh),
                             ("fresh .json", fresh / "r.json"), ("fresh .msgpack", fresh / "r.msgpack")]:
            with pytest.raises(OSError) as exc:
                new.save(target)
            errors[name] = exc.value
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    for name, e in errors.items():
        print(f"{name}: {type(e).__name__}: {e}")
        assert e.errno == errno.EFBIG, f"{name}: {e!r}"
    assert _listing(existing) == sorted(os.path.basename(p) for p in old_paths), _listing(existing)
    for p, b in old_bytes.items():
        assert open(p, "rb").read() == b, f"{p} changed after a failed save"
    assert Results.load(existing).allclose(old), "the old results no longer load"
    assert _listing(fresh) == [], f"a failed save left {_listing(fresh)}"
    # with room again, the same save works and the model still evaluates
    new.save(fresh)
    assert Results.load(fresh).allclose(new)
    assert rel_model.evaluate(PROMPTS, seed=1, progress=False).allclose(old, check_meta=False)


def test_threads_share_one_model(rel_model):
    """Four Python threads evaluate on one model at once, three times each; every result equals
    the sequential one and no tensor is left behind."""
    jobs = [dict(prompts=PROMPTS, seed=s, positions=p) for s, p in [(1, "random"), (2, "last"), (3, "random"), (4, "last")]]
    want = [rel_model.evaluate(progress=False, **j) for j in jobs]
    gc.collect()  # the count is process-wide: free other tests' dropped models first
    live = rel_model.live_tensors()
    got, errors = {}, []
    start = threading.Barrier(len(jobs))

    def work(i):
        try:
            start.wait()
            for k in range(3):
                got[(i, k)] = rel_model.evaluate(progress=False, **jobs[i])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(got) == 3 * len(jobs), f"only {len(got)} of {3 * len(jobs)} evaluations finished"
    for (i, k), r in got.items():
        assert r.allclose(want[i], check_meta=False), f"thread {i} run {k}: results differ from the sequential run"
    assert rel_model.live_tensors() == live, f"live tensors {live} -> {rel_model.live_tensors()}"


def test_ctrl_c_during_evaluate_keeps_model_usable(rel_model):
    before = rel_model.evaluate(PROMPTS, progress=False)
    gc.collect()  # the count is process-wide: free other tests' dropped models first
    live = rel_model.live_tensors()
    long_job = np.random.default_rng(0).integers(0, 50000, (4000, 60)).tolist()
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            rel_model.evaluate(long_job, progress=False)
            pytest.fail("evaluate finished before the interrupt")
    finally:
        timer.cancel()
    assert rel_model.live_tensors() == live, f"live tensors {live} -> {rel_model.live_tensors()}"
    assert rel_model.evaluate(PROMPTS, progress=False).allclose(before, check_meta=False)
