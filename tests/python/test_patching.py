"""model.hidden_states / patch / generate against HF transformers forward hooks (patch_reference),
on the tiny random GPT-J in float32, one reference row at a time."""
import numpy as np
import pytest
import torch

import simplescope as ss
from patch_reference import block_output, generate_tokens, patch_logits

TOL = 1e-4


def ids_of(hf_tokenizer, text):
    return hf_tokenizer.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def targets(hf_tokenizer, prompts):
    """Token lists of mixed lengths (4 … 60 tokens)."""
    return [ids_of(hf_tokenizer, t) for t in prompts[:4]] + [ids_of(hf_tokenizer, "The capital of France is")]


@pytest.fixture(scope="module")
def sources(hf_model, hf_tokenizer, prompts):
    """Hidden states from other prompts (realistic scale), [n, d_model] float32."""
    src = [ids_of(hf_tokenizer, t) for t in prompts[2:7]]
    return torch.stack([block_output(hf_model, ids, l % 4, len(ids) // 2) for l, ids in enumerate(src)])


def check_close(got, want, what):
    diff = (got.float() - want.float()).abs().max().item()
    assert diff <= TOL, f"{what}: max |simplescope - HF| = {diff:.3g} > {TOL}"


def test_hidden_states_equal_hf_block_outputs(model, hf_model, targets):
    layers = [0, 1, 2, 3, 3]
    positions = [0, -1, 2, -2, 1]
    got = model.hidden_states(targets, layers, positions)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (len(targets), 64)
    for i, ids in enumerate(targets):
        want = block_output(hf_model, ids, layers[i], positions[i] % len(ids))
        check_close(got[i], want, f"row {i}")


def test_patch_matches_hf_hooks_mixed_rows(model, hf_model, targets, sources):
    """Distinct targets of mixed lengths, per-row layers and positions, one multi-position row."""
    n = len(targets)
    layers = [0, 3, 1, 2, 1]
    positions = [-1, 2, [0, 3, -1], 1, -3]
    out = model.patch(targets, sources, layers, positions, progress=False)
    assert tuple(out.logits.shape) == (n, 50400)
    for i, ids in enumerate(targets):
        pos = positions[i] if isinstance(positions[i], list) else [positions[i]]
        want = patch_logits(hf_model, ids, sources[i], layers[i], [p % len(ids) for p in pos])
        check_close(out.logits[i], want, f"row {i}")


@pytest.mark.parametrize("site", ["resid_post", "resid_pre"])
def test_patch_shared_target(model, hf_model, targets, sources, site):
    """One target for every row (its prefix shared), last position and a middle one."""
    tgt = targets[4]
    layers = [0, 1, 2, 3, 0]
    for position in (-1, 2):
        out = model.patch(tgt, sources, layers, position, site=site, progress=False)
        for i in range(len(layers)):
            want = patch_logits(hf_model, tgt, sources[i], layers[i], [position % len(tgt)], site=site)
            check_close(out.logits[i], want, f"{site} position {position} row {i}")


def test_patch_transforms(model, hf_model, targets, sources):
    g = torch.Generator().manual_seed(0)
    d_in = 48
    v = torch.randn(len(targets), d_in, generator=g)
    W = torch.randn(d_in, 64, generator=g) / d_in ** 0.5
    b = torch.randn(64, generator=g)
    mapped = v @ W + b
    aff = model.patch(targets, v, 2, -1, transform=(W, b), progress=False)
    fn = model.patch(targets, v, 2, -1, transform=lambda x: x @ W + b, progress=False)
    for i, ids in enumerate(targets):
        want = patch_logits(hf_model, ids, mapped[i], 2, [len(ids) - 1])
        check_close(aff.logits[i], want, f"affine row {i}")
        check_close(fn.logits[i], want, f"callable row {i}")


def test_source_rows_equal_explicit_hidden_states(model, hf_model, targets, prompts):
    src = ss.Source(prompts[:5], layer=[0, 1, 2, 3, 1], position=[1, -1, 2, 0, -2])
    via_source = model.patch(targets, src, 1, -1, progress=False)
    vecs = model.hidden_states(prompts[:5], [0, 1, 2, 3, 1], [1, -1, 2, 0, -2])
    explicit = model.patch(targets, vecs, 1, -1, progress=False)
    assert torch.equal(via_source.logits, explicit.logits)
    for i, ids in enumerate(targets):
        want = patch_logits(hf_model, ids, vecs[i], 1, [len(ids) - 1])
        check_close(via_source.logits[i], want, f"row {i}")


def test_top_k_names_tokens(model):
    out = model.patch("The capital of France is", torch.zeros(2, 64), 1, progress=False)
    top = out.top_k(3)
    assert len(top) == 2 and all(len(r) == 3 for r in top)
    probs = torch.softmax(out.logits[0], -1)
    best = int(probs.argmax())
    assert top[0][0][0] == model.to_str_tokens([best])[0]
    assert abs(top[0][0][1] - float(probs[best])) < 1e-6


def test_generate_greedy_matches_hf(model, hf_model, hf_tokenizer, targets, sources):
    """20 new tokens, mixed-length batch, with and without a patch; rows together equal rows alone."""
    layers = [1, 0, 3, 2, 1]
    together = model.generate(targets, sources, layers, -1, max_new_tokens=20, progress=False)
    plain = model.generate(targets, max_new_tokens=20, progress=False)
    for i, ids in enumerate(targets):
        want = generate_tokens(hf_model, ids, 20, sources[i], layers[i], [len(ids) - 1])
        assert together.tokens[i] == want, f"patched row {i}"
        alone = model.generate([ids], sources[i:i + 1], layers[i], -1, max_new_tokens=20, progress=False)
        assert alone.tokens[0] == want, f"patched row {i} alone"
        assert plain.tokens[i] == generate_tokens(hf_model, ids, 20), f"unpatched row {i}"
        assert together.texts[i] == hf_tokenizer.decode(together.tokens[i], skip_special_tokens=False)


def test_generate_shared_target_middle_position_and_one_token(model, hf_model, targets, sources):
    tgt = targets[4]
    out = model.generate(tgt, sources, [0, 1, 2, 3, 2], 1, max_new_tokens=12, site="resid_pre", progress=False)
    for i in range(5):
        want = generate_tokens(hf_model, tgt, 12, sources[i], [0, 1, 2, 3, 2][i], [1], site="resid_pre")
        assert out.tokens[i] == want, f"row {i}"
    one = [tgt[:1]]
    got = model.generate(one, sources[:1], 2, 0, max_new_tokens=8, progress=False)
    assert got.tokens[0] == generate_tokens(hf_model, one[0], 8, sources[0], 2, [0])


def test_sampling_repeats_with_seed(model, targets, sources):
    kw = dict(max_new_tokens=15, do_sample=True, temperature=0.8, top_k=50, top_p=0.9, progress=False)
    a = model.generate(targets, sources, 2, -1, seed=7, **kw)
    b = model.generate(targets, sources, 2, -1, seed=7, **kw)
    c = model.generate(targets, sources, 2, -1, seed=8, **kw)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_stop_strings_end_rows(model, targets):
    free = model.generate(targets[:2], max_new_tokens=20, progress=False)
    stop = free.texts[0][3:6]
    assert stop, "the reference generation is too short to cut"
    cut = model.generate(targets[:2], max_new_tokens=20, stop=stop, progress=False)
    assert stop in cut.texts[0] and free.texts[0].startswith(cut.texts[0])
    assert len(cut.tokens[0]) < len(free.tokens[0])


def test_question_mark_patch_reproduces_evaluate(model, prompts):
    """patch into "?" at the last position = evaluate's simplescope method (same positions)."""
    texts = prompts[:4]
    toks = [model.tokenize(t, prepend_bos=True) for t in texts]
    pos = np.array([[len(t) // 2] * 4 for t in toks])
    res = model.evaluate(texts, methods=["simplescope"], positions=pos, progress=False)
    ex = res.per_example("simplescope")
    for layer in range(4):
        vecs = model.hidden_states(toks, layer, [int(p) for p in pos[:, layer]])
        out = model.patch("?", vecs, layer, -1, prepend_bos=True, progress=False)
        logp = torch.log_softmax(out.logits.double(), -1)
        y = torch.tensor(ex["source_top1"][:, layer])
        assert out.logits.argmax(-1).tolist() == ex["patched_top1"][:, layer].tolist()
        surprisal = -logp[torch.arange(len(texts)), y].numpy()
        np.testing.assert_allclose(surprisal, ex["surprisal"][:, layer], atol=1e-4)


@pytest.mark.parametrize("call, match", [
    (lambda m, v: m.patch("Hello world", v[:2], 4, -1), "layer 4 out of range"),
    (lambda m, v: m.patch("Hello world", v[:2], 1, 5), "position 5 outside"),
    (lambda m, v: m.patch("Hello world", v[:2, :10], 1, -1), r"shape \[2, 10\]"),
    (lambda m, v: m.patch("Hello world", v[:2, :10], 1, -1, transform=(torch.zeros(9, 64), torch.zeros(64))), "transform W"),
    (lambda m, v: m.patch(["a", "b", "c"], v[:2], 1, -1), "row counts disagree"),
    (lambda m, v: m.patch("", v[:2], 1, -1), "empty"),
    (lambda m, v: m.generate("Hello", v[:2], 1, -1, max_new_tokens=0), "max_new_tokens"),
    (lambda m, v: m.generate("Hello", v[:2], 1, -1, max_new_tokens=10**6), "max_new_tokens"),
    (lambda m, v: m.patch("Hello", v[:2], 1, site="resid_mid"), "site"),
    (lambda m, v: m.generate("Hello", v[:2], 1, do_sample=True, temperature=0), "temperature"),
])
def test_bad_input_is_a_clear_error(model, sources, call, match):
    with pytest.raises(ValueError, match=match):
        call(model, sources)
