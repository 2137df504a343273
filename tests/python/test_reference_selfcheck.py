"""Self-check of core/patchscope/testdata/reference.py (the brute-force Patchscope reference).

A tiny random GPT-J (weights re-drawn with std ~1/sqrt(fan_in), so blocks are far from identity) is
saved to a temp dir; the reference runs once through its CLI (subprocess, IN/OUT json) and its
output is checked against invariants computed here independently with a plain HF forward
(output_hidden_states, ln_f and lm_head applied by hand), never with forward hooks:
- source_top1 == argmax of the plain forward's logits at p;
- logitlens at layer l == lm_head(ln_f(resid_post[l][p])); at the last layer prec1 == 1 and
  surprisal == -log_softmax(source logits[p])[y];
- patching a prompt into itself (placeholder = p, target_layer "same") changes nothing;
- target_layer "last" (any target prompt) equals logitlens; the "all" grid's column l equals
  "same", its last column equals logitlens, its column j equals an int target_layer j.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import GPTJConfig, GPTJForCausalLM

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "core", "patchscope", "testdata", "reference.py")
N_LAYER, VOCAB = 3, 100
LAYERS = [0, 1, 2]
PROMPT_LENS = [5, 9, 1, 12]
METRICS = ("prec1", "surprisal", "paper_surprisal", "source_top1", "patched_top1")
TOL = 1e-4


def _tiny_model(path):
    torch.set_num_threads(1)  # tiny model: threads only add overhead on a busy machine
    torch.manual_seed(1234)
    cfg = GPTJConfig(n_embd=32, n_layer=N_LAYER, n_head=4, rotary_dim=4, vocab_size=VOCAB,
                     n_positions=64, bos_token_id=0, eos_token_id=0)
    model = GPTJForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(99)
    from simplescope._randmodel import redraw_weights
    redraw_weights(model, g, bias_std=0.1, ln_std=0.1)
    model.save_pretrained(path)
    return model


def _plain(model, ids):
    """Plain forward: logits (T, V) and hidden_states list (HF layout: [embed, blocks..., ln_f(last)])."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    return out.logits[0], [h[0] for h in out.hidden_states]


def _lens_logits(model, logits, hs, layer, p):
    """lm_head(ln_f(resid_post[layer][p])), computed without hooks."""
    if layer == N_LAYER - 1:
        return logits[p]  # HF's last hidden state is already ln_f'd
    with torch.no_grad():
        return model.lm_head(model.transformer.ln_f(hs[layer + 1][p]))


def _logsm(v):
    return torch.log_softmax(v.double(), dim=-1)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    mdir = tmp / "model"
    model = _tiny_model(str(mdir))
    rng = np.random.default_rng(7)
    prompts = [[int(t) for t in rng.integers(0, VOCAB, n)] for n in PROMPT_LENS]
    other = [int(t) for t in rng.integers(0, VOCAB, 6)]
    k_other = 4
    pos = [[int(rng.integers(0, len(ids))) for _ in LAYERS] for ids in prompts]
    methods = [
        {"name": "logitlens", "kind": "logitlens"},
        {"name": "same", "kind": "patch", "target": other, "placeholder": k_other, "target_layer": "same"},
        {"name": "last", "kind": "patch", "target": other, "placeholder": k_other, "target_layer": "last"},
        {"name": "fixed1", "kind": "patch", "target": other, "placeholder": k_other, "target_layer": 1},
        {"name": "grid", "kind": "patch", "target": other, "placeholder": k_other, "target_layer": "all"},
    ]
    positions = {m["name"]: pos for m in methods}
    self_k = {}
    for i, ids in enumerate(prompts):  # one self-patch method per prompt, placeholder = p
        k = len(ids) // 2
        self_k[i] = k
        name = f"self{i}"
        methods.append({"name": name, "kind": "patch", "target": ids, "placeholder": k,
                        "target_layer": "same"})
        positions[name] = [[k if j == i else pos[j][li] for li in range(len(LAYERS))]
                           for j in range(len(prompts))]
    spec = {"model": str(mdir), "prompts": prompts, "layers": LAYERS, "methods": methods,
            "positions": positions}
    inp, outp = tmp / "in.json", tmp / "out.json"
    inp.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, SCRIPT, str(inp), str(outp)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"reference.py failed ({proc.returncode}):\n{proc.stderr}"
    out = json.loads(outp.read_text())
    plain = [_plain(model, ids) for ids in prompts]
    return dict(model=model, prompts=prompts, pos=pos, self_k=self_k, out=out, plain=plain,
                methods=methods)


def _close(got, want, what):
    assert abs(got - want) <= TOL, f"{what}: got {got!r}, want {want!r}, diff {abs(got - want):.3g}"


def test_shapes(case):
    out, n = case["out"], len(case["prompts"])
    assert set(out) == {m["name"] for m in case["methods"]}
    for name, res in out.items():
        assert set(res) == set(METRICS), name
        for key in METRICS:
            a = np.asarray(res[key])
            want = (n, len(LAYERS), N_LAYER) if name == "grid" else (n, len(LAYERS))
            assert a.shape == want, f"{name}.{key}: shape {a.shape}, want {want}"
            assert np.all(np.isfinite(a)), f"{name}.{key} has non-finite values"


def test_source_top1_matches_plain_forward(case):
    for name, res in case["out"].items():
        for i, (logits, _) in enumerate(case["plain"]):
            for li in range(len(LAYERS)):
                p = case["self_k"][i] if name == f"self{i}" else case["pos"][i][li]
                y = int(torch.argmax(logits[p]))
                st = np.asarray(res["source_top1"])[i, li]
                assert np.all(st == y), f"{name} prompt {i} layer {li}: source_top1 {st}, want {y}"


def test_logitlens_equals_unembedded_residual(case):
    res, model = case["out"]["logitlens"], case["model"]
    for i, (logits, hs) in enumerate(case["plain"]):
        for li, layer in enumerate(LAYERS):
            p = case["pos"][i][li]
            lp_src = _logsm(logits[p])
            y = int(torch.argmax(logits[p]))
            lens = _lens_logits(model, logits, hs, layer, p)
            top = int(torch.argmax(lens))
            where = f"logitlens prompt {i} layer {layer} pos {p}"
            assert res["patched_top1"][i][li] == top, f"{where}: patched_top1 {res['patched_top1'][i][li]} want {top}"
            assert res["prec1"][i][li] == (1.0 if top == y else 0.0), where
            _close(res["surprisal"][i][li], float(-_logsm(lens)[y]), where + " surprisal")
            _close(res["paper_surprisal"][i][li], float(-lp_src[top]), where + " paper_surprisal")
            if layer == N_LAYER - 1:
                assert res["prec1"][i][li] == 1.0, where
                _close(res["surprisal"][i][li], float(-lp_src[y]), where + " surprisal vs source")
                _close(res["paper_surprisal"][i][li], float(-lp_src[y]), where + " paper vs source")


def test_self_patch_changes_nothing(case):
    for i, (logits, _) in enumerate(case["plain"]):
        res, k = case["out"][f"self{i}"], case["self_k"][i]
        lp = _logsm(logits[k])
        y = int(torch.argmax(logits[k]))
        for li, layer in enumerate(LAYERS):
            where = f"self{i} layer {layer} pos {k}"
            assert res["prec1"][i][li] == 1.0, f"{where}: prec1 {res['prec1'][i][li]}"
            assert res["patched_top1"][i][li] == y, where
            _close(res["surprisal"][i][li], float(-lp[y]), where + " surprisal")
            _close(res["paper_surprisal"][i][li], float(-lp[y]), where + " paper_surprisal")


def _assert_same(a, b, what):
    for key in ("prec1", "source_top1", "patched_top1"):
        assert a[key] == b[key], f"{what} {key}: {a[key]} vs {b[key]}"
    for key in ("surprisal", "paper_surprisal"):
        d = float(np.max(np.abs(np.asarray(a[key]) - np.asarray(b[key]))))
        assert d <= TOL, f"{what} {key}: max diff {d:.3g}\n{a[key]}\n{b[key]}"


def _grid_column(res, j):
    return {key: [[cell[j] for cell in row] for row in res[key]] for key in METRICS}


def test_target_layer_last_equals_logitlens(case):
    _assert_same(case["out"]["last"], case["out"]["logitlens"], "last vs logitlens")


def test_grid_columns(case):
    out = case["out"]
    grid = out["grid"]
    _assert_same(_grid_column(grid, N_LAYER - 1), out["logitlens"], "grid[:, :, L-1] vs logitlens")
    _assert_same(_grid_column(grid, 1), out["fixed1"], "grid[:, :, 1] vs fixed1")
    diag = {key: [[grid[key][i][li][layer] for li, layer in enumerate(LAYERS)]
                  for i in range(len(case["prompts"]))] for key in METRICS}
    _assert_same(diag, out["same"], "grid diagonal vs same")


def test_patching_is_not_trivial(case):
    """The blocks are far from identity: patching at layer 0 into another prompt moves the output."""
    same, lens = case["out"]["same"], case["out"]["logitlens"]
    d = np.abs(np.asarray(same["surprisal"])[:, 0] - np.asarray(lens["surprisal"])[:, 0])
    assert d.max() > 1e-2, f"same vs logitlens at layer 0 differ by at most {d.max():.3g}"
