"""Ctrl-C during a long evaluate stops it promptly and leaves the model usable; two threads
evaluating on one model at once get the same results as a sequential run."""
import gc
import _thread
import threading
import time

import numpy as np
import pytest

STOP_WITHIN_S = 1.5  # after the interrupt; the engine checks for cancellation between batches


def test_keyboard_interrupt_cancels_evaluate(model, prompts):
    before = model.evaluate(prompts[:3], progress=False)
    gc.collect()  # the count is process-wide: free other tests' dropped models first
    live = model.live_tensors()
    rng = np.random.default_rng(0)
    long_job = rng.integers(0, 50000, (3000, 120)).tolist()  # ~45 s of work on 2 cores
    fired = []

    def interrupt():
        fired.append(time.monotonic())
        _thread.interrupt_main()

    timer = threading.Timer(0.5, interrupt)
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.evaluate(long_job, progress=False)
            pytest.fail(f"evaluate finished in {time.monotonic() - t0:.2f} s, before the interrupt")
    finally:
        timer.cancel()
    stopped = time.monotonic()
    assert fired, "the timer never fired"
    took = stopped - fired[0]
    print(f"evaluate stopped {took:.3f} s after the interrupt")
    assert took < STOP_WITHIN_S, f"evaluate took {took:.2f} s to stop after KeyboardInterrupt"
    assert model.live_tensors() == live, f"{model.live_tensors() - live} tensors leaked by the cancelled run"
    after = model.evaluate(prompts[:3], progress=False)
    assert after.allclose(before, check_meta=False), "results changed after a cancelled run"


def test_two_threads_on_one_model(model, prompts):
    jobs = [dict(prompts=prompts, seed=1), dict(prompts=prompts[::-1] * 3, seed=2, positions="last")]
    want = [model.evaluate(progress=False, **j) for j in jobs]
    got, errors = [None, None], []
    start = threading.Barrier(2)

    def work(i):
        try:
            start.wait()
            for _ in range(2):
                got[i] = model.evaluate(progress=False, **jobs[i])
        except BaseException as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    for i in range(2):
        assert got[i].allclose(want[i], check_meta=False), f"thread {i}: results differ from the sequential run"
