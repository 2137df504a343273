"""Fidelity to the published runs: the notebook and paper position modes against Python's own
`random` loops, random positions keyed by identity, empty documents skipped without changing the
others, and the provenance metadata (kept by save/load)."""
import hashlib
import random
import struct

import numpy as np
import pytest
import torch

import simplescope as ss

METHODS = ["logitlens", "patchscope", "simplescope"]
BOS = 50256


def lengths_as_evaluated(model, texts, prepend_bos=True):
    """Token counts as the notebook saw them: BOS included, cut to the model's context."""
    n_ctx = model.config["n_positions"]
    return [min(len(ids), n_ctx) for ids in model.to_tokens(texts, prepend_bos=prepend_bos)]


def test_notebook_positions_are_the_notebook_loop(model, prompts):
    """random.seed(seed); for method, for layer, for document: random.randint(0, len - 1) --
    with a BOS-only document (an empty text) and a document longer than the context."""
    texts = prompts[:4] + ["", "word " * 300] + prompts[4:]
    res = model.evaluate(texts, methods=METHODS, positions="notebook", seed=42, progress=False)
    lens = lengths_as_evaluated(model, texts)
    assert lens[5] == model.config["n_positions"] and lens[4] == 1
    random.seed(42)
    for m in METHODS:
        want = np.zeros((len(texts), model.n_layers), dtype=np.int64)
        for layer in range(model.n_layers):
            for d, n in enumerate(lens):
                want[d, layer] = random.randint(0, n - 1)
        np.testing.assert_array_equal(res.per_example(m)["position"], want, err_msg=m)
    assert res.meta["positions"] == "notebook" and res.meta["skipped"] == {"empty": [], "too_short": []}


def test_notebook_methods_and_layers_in_request_order(model, prompts):
    res = model.evaluate(prompts, methods=["simplescope", "logitlens"], layers=[3, 0], positions="notebook",
                         seed=-5, progress=False)
    lens = lengths_as_evaluated(model, prompts)
    random.seed(-5)
    for m in ["simplescope", "logitlens"]:
        for li in range(2):
            want = [random.randint(0, n - 1) for n in lens]
            assert res.per_example(m)["position"][:, li].tolist() == want, (m, li)


def test_paper_positions(model, prompts):
    """One random.randint(start, len - 2) per document (start 1 with BOS), the same for every
    layer and method; documents too short are skipped, counted, and draw nothing."""
    texts = ["Hi", prompts[0], "", prompts[1], "a", prompts[2]]
    for bos in (False, True):
        res = model.evaluate(texts, positions="paper", seed=7, prepend_bos=bos, progress=False)
        start = 1 if bos else 0
        lens = lengths_as_evaluated(model, texts, bos)
        random.seed(7)
        want, short = [], []
        for d, n in enumerate(lens):
            if n == 0:
                want.append(-1)
            elif n - 2 < start:
                want.append(-1)
                short.append(d)
            else:
                want.append(random.randint(start, n - 2))
        assert res.meta["skipped"]["too_short"] == short and short, (bos, lens)
        assert res.meta["skipped"]["empty"] == ([] if bos else [2])
        for m in METHODS:
            pos = res.per_example(m)["position"]
            assert (pos == np.asarray(want)[:, None]).all(), (bos, m, pos[:, 0], want)
            assert np.isnan(res.per_example(m)["prec1"][short]).all()


def test_paper_preset_defaults_to_paper_positions(model, prompts):
    res = model.evaluate(prompts[:3], preset="paper", progress=False)
    assert res.meta["positions"] == "paper" and res.meta["prepend_bos"] is False and res.meta["preset"] == "paper"
    res = model.evaluate(prompts[:3], preset="seed", progress=False)
    assert (res.meta["positions"], res.meta["seed"], res.meta["prepend_bos"]) == ("notebook", 42, True)
    # given values win over the preset's
    res = model.evaluate(prompts[:3], preset="seed", positions="last", seed=3, prepend_bos=False, progress=False)
    assert (res.meta["positions"], res.meta["seed"], res.meta["prepend_bos"]) == ("last", 3, False)


def test_random_positions_do_not_depend_on_the_other_documents_or_methods(model, prompts):
    full = model.evaluate(prompts, methods=METHODS, positions="random", seed=11, progress=False)
    sub_docs = [5, 1, 3]
    sub = model.evaluate([prompts[i] for i in sub_docs], methods=["simplescope", "logitlens"], layers=[2, 0],
                         positions="random", seed=11, progress=False)
    for m in ["simplescope", "logitlens"]:
        want = full.per_example(m)["position"][sub_docs][:, [2, 0]]
        np.testing.assert_array_equal(sub.per_example(m)["position"], want, err_msg=m)


@pytest.mark.parametrize("positions", ["random", "notebook", "last"])
def test_empty_documents_leave_the_others_bit_equal(model, prompts, positions):
    docs = prompts[:5]
    with_empty = docs[:2] + [""] + docs[2:] + [""]
    a = model.evaluate(docs, positions=positions, prepend_bos=False, progress=False)
    b = model.evaluate(with_empty, positions=positions, prepend_bos=False, progress=False)
    assert b.meta["skipped"] == {"empty": [2, 6], "too_short": []} and b.n_prompts == 7
    kept = [0, 1, 3, 4, 5]
    for m in METHODS:
        for f, x in a.per_example(m).items():
            y = b.per_example(m)[f]
            assert x.tobytes() == y[kept].tobytes(), (positions, m, f)
            empty = y[[2, 6]]
            assert (np.isnan(empty).all() if y.dtype.kind == "f" else (empty == -1).all()), (m, f)


def test_provenance_metadata_survives_save_and_load(model, prompts, tmp_path):
    res = model.evaluate(prompts[:3], positions="notebook", seed=9, preset="seed", tf32=True, progress=False)
    meta = res.meta
    assert meta["simplescope_version"] == ss.__version__
    assert meta["torch_version"] == torch.__version__ and meta["cuda_version"] == torch.version.cuda
    assert meta["device"] == "cpu" and isinstance(meta["device_name"], str) and meta["device_name"]
    assert meta["dtype"] == "float32"
    assert (meta["seed"], meta["positions"], meta["preset"]) == (9, "notebook", "seed")
    # TF32: the flags torch.backends reads; on CPU tf32=True changes nothing
    assert meta["tf32"] == {"cublas": torch.backends.cuda.matmul.allow_tf32,
                            "cudnn": torch.backends.cudnn.allow_tf32}
    # batch sizes from the engine's stats
    for k in ("batch_tokens", "patch_rows", "chunk_prompts", "patch_rows_final", "source_batch_cap"):
        assert isinstance(meta["stats"][k], int), k
    assert meta["stats"]["batch_tokens"] > 0 and meta["stats"]["patch_rows"] > 0
    # the corpus digest: SHA-256 over each prompt's length and ids as little-endian uint32
    h = hashlib.sha256()
    for ids in model.to_tokens(prompts[:3], prepend_bos=True):
        h.update(struct.pack(f"<I{len(ids)}I", len(ids), *ids))
    assert meta["corpus_sha256"] == h.hexdigest()
    for kind in ("r.json", "r.msgpack"):
        back = ss.Results.load(res.save(tmp_path / kind)[0])
        for k in ("simplescope_version", "torch_version", "cuda_version", "device", "device_name", "dtype",
                  "tf32", "seed", "positions", "preset", "corpus_sha256", "stats", "skipped"):
            assert back.meta[k] == meta[k], (kind, k)


def test_tf32_restored_after_the_call(model, prompts):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    for tf32 in (True, False, None):
        model.evaluate(prompts[:1], tf32=tf32, layers=[0], progress=False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(TypeError, match="tf32"):
        model.evaluate(prompts[:1], tf32="yes", progress=False)


def test_cli_rejects_bad_positions_and_seed(tiny_dir, tmp_path):
    from simplescope import __main__ as cli

    for args, msg in ((["--positions", "first"], "unknown mode (known: random, notebook, paper, last)"),
                      (["--seed", str(2 ** 63)], "--seed 9223372036854775808 is outside the int64 range")):
        with pytest.raises(cli.UserError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            cli.run_eval(tiny_dir, "unused.jsonl", str(tmp_path / "o"), positions=args[1] if args[0] == "--positions" else None,
                         seed=int(args[1]) if args[0] == "--seed" else None)
