"""Every supported family through the Python API, against HF transformers forward hooks (patch_reference):
run_with_cache, patch, generate, evaluate and inspect on tiny random models of each family, made and saved
by HF transformers (core/gptj/testdata/hf_families.py: GQA, Llama 3 rope scaling, NeoX rotary_pct 0.25, a
Mistral window shorter than the prompts, Qwen2 windows and biases, Qwen3 q/k norms, GPT-2 learned positions).
Token ids throughout: the models have no tokenizer."""
import os
import sys

import numpy as np
import pytest
import torch

import simplescope as ss
from patch_reference import block_output, blocks, generate_tokens, patch_logits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "core", "gptj", "testdata"))
import hf_families  # noqa: E402

TOL = 1e-4
FAMILIES = ["neox", "gpt2", "gpt2-scaled", "llama3", "llama-bias", "mistral", "qwen2", "qwen3", "gemma"]


@pytest.fixture(scope="module", params=FAMILIES)
def fam(request, tmp_path_factory):
    """(name, the HF model, simplescope's view of the same checkpoint)."""
    torch.set_num_threads(1)
    name = request.param
    hf = hf_families.build(name)
    path = str(tmp_path_factory.mktemp(name))
    hf_families.save(name, hf, path)
    m = ss.load(path, device="cpu", dtype="float32")
    yield name, hf, m
    m.close()


def rand_ids(n, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab - 1, (n,), generator=g).tolist()  # vocab - 1 is EOS


def check_close(got, want, what):
    diff = (torch.as_tensor(got).float() - want.float()).abs().max().item()
    assert diff <= TOL, f"{what}: max |simplescope - HF| = {diff:.3g} > {TOL}"


def test_config_names_the_family(fam):
    name, hf, m = fam
    c = m.config
    assert c["model_type"] == hf.config.model_type
    assert c["n_layer"] == len(blocks(hf)) and c["n_embd"] == hf.config.hidden_size
    kv = getattr(hf.config, "num_key_value_heads", None) or hf.config.num_attention_heads
    assert c["n_key_value_heads"] == kv
    if name == "mistral":
        assert c["sliding_window"] == [4, 4, 4]


def test_run_with_cache_equals_hf(fam):
    _, hf, m = fam
    ids = rand_ids(11, hf.config.vocab_size, 1)
    logits, cache = m.run_with_cache([ids])
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0]
    check_close(logits[0], want, "logits")
    for l in range(len(blocks(hf))):
        for p in (0, 5, 10):
            check_close(cache[f"blocks.{l}.hook_resid_post"][0, p], block_output(hf, ids, l, p), f"layer {l} position {p}")


def test_patch_matches_hf_hooks(fam):
    """Targets of mixed lengths, per-row layers and positions (one multi-position row), both sites."""
    _, hf, m = fam
    V, L = hf.config.vocab_size, len(blocks(hf))
    targets = [rand_ids(n, V, 10 + n) for n in (6, 9, 12)]
    srcs = [rand_ids(n, V, 20 + n) for n in (7, 10, 13)]
    layers = [0, L - 1, 1]
    vecs = torch.stack([block_output(hf, s, (l + 1) % L, len(s) // 2) for l, s in enumerate(srcs)])
    positions = [-1, 3, [0, 4, -1]]
    for site in ("resid_post", "resid_pre"):
        out = m.patch(targets, vecs, layers, positions, site=site, progress=False)
        for i, ids in enumerate(targets):
            pos = positions[i] if isinstance(positions[i], list) else [positions[i]]
            want = patch_logits(hf, ids, vecs[i], layers[i], [p % len(ids) for p in pos], site=site)
            check_close(out.logits[i], want, f"{site} row {i}")
    # one shared target: its prefix computed once, the rows continue from the patched block
    out = m.patch(targets[2], vecs, layers, -1, progress=False)
    for i in range(3):
        check_close(out.logits[i], patch_logits(hf, targets[2], vecs[i], layers[i], [11]), f"shared target row {i}")


def test_generate_greedy_matches_hf(fam):
    """12 new tokens per row, a mixed-length batch, patched and not (the Mistral window is 4: the
    decode steps attend through it)."""
    _, hf, m = fam
    V, L = hf.config.vocab_size, len(blocks(hf))
    eos = m.config["eos_token_id"]
    targets = [rand_ids(n, V, 30 + n) for n in (5, 8, 11)]
    srcs = [rand_ids(9, V, 40 + i) for i in range(3)]
    layers = [1, 0, L - 1]
    vecs = torch.stack([block_output(hf, s, l, 4) for s, l in zip(srcs, layers)])
    patched = m.generate(targets, vecs, layers, -1, max_new_tokens=12, progress=False)
    plain = m.generate(targets, max_new_tokens=12, progress=False)
    for i, ids in enumerate(targets):
        want = generate_tokens(hf, ids, 12, vecs[i], layers[i], [len(ids) - 1], eos=eos)
        assert patched.tokens[i] == want, f"patched row {i}"
        assert plain.tokens[i] == generate_tokens(hf, ids, 12, eos=eos), f"unpatched row {i}"


def test_evaluate_matches_hf_hooks(fam):
    """logitlens and a custom target method, every layer, the last position: the patched top-1
    and surprisal of each (prompt, layer) equal the paper's procedure with HF hooks."""
    _, hf, m = fam
    V, L = hf.config.vocab_size, len(blocks(hf))
    prompts = [rand_ids(n, V, 50 + n) for n in (4, 7, 10)]
    target = rand_ids(5, V, 60)
    meth = {"name": "custom", "target_tokens": target, "placeholder": len(target) - 1}
    res = m.evaluate(prompts, methods=["logitlens", meth], positions="last", prepend_bos=False, progress=False)
    for name in ("logitlens", "custom"):
        ex = res.per_example(name)
        for i, ids in enumerate(prompts):
            p = len(ids) - 1
            with torch.no_grad():
                src = hf(torch.tensor([ids])).logits[0, p]
            y = int(src.argmax())
            assert ex["source_top1"][i][0] == y
            for l in range(L):
                h = block_output(hf, ids, l, p)
                if name == "logitlens":
                    logits = patch_logits(hf, ids, h, L - 1, [p])
                else:
                    logits = patch_logits(hf, target, h, l, [len(target) - 1])
                lp = torch.log_softmax(logits, -1)
                assert ex["patched_top1"][i][l] == int(logits.argmax()), f"{name} prompt {i} layer {l}"
                assert abs(ex["surprisal"][i][l] - float(-lp[y])) < 1e-3, f"{name} prompt {i} layer {l}"


def test_inspect_runs(fam):
    _, hf, m = fam
    ids = rand_ids(8, hf.config.vocab_size, 70)
    target = rand_ids(4, hf.config.vocab_size, 71)
    df = m.inspect(ids, k=3, methods=["logitlens", {"name": "c", "target_tokens": target, "placeholder": 3}],
                   prepend_bos=False)
    L = len(blocks(hf))
    assert set(df["method"]) >= {"logitlens", "c"}
    assert len(df[df["method"] == "c"]) == 3 * L
    assert np.all(np.isfinite(df["prob"]))


def test_from_hf_shares_the_parameters(fam):
    """ss.from_hf over the HF model itself (no copy) computes what ss.load of its checkpoint does."""
    _, hf, m = fam
    ids = rand_ids(9, hf.config.vocab_size, 80)
    shared = ss.from_hf(hf, tokenizer=False)
    try:
        assert shared.config["model_type"] == hf.config.model_type
        a, ca = shared.run_with_cache([ids])
        b, cb = m.run_with_cache([ids])
        assert torch.equal(a, b)
        L = len(blocks(hf))
        assert torch.equal(ca[f"blocks.{L - 1}.hook_resid_post"], cb[f"blocks.{L - 1}.hook_resid_post"])
    finally:
        shared.close()
