"""Make a random GPT-J checkpoint for the benchmarks (HF GPTJForCausalLM, fixed seed).

usage: make_model.py --config tiny|small|gptj6b --out DIR [--seed N] [--device cpu|cuda] [--dtype float32|float16]

Writes DIR/config.json, DIR/model.safetensors (save_pretrained) and the GPT-J tokenizer files from
the package's python/simplescope/data/tokenizer, so that ss.load(DIR) and gptj.Load(DIR) can read and tokenize.
Weights are redrawn at a scale of 1/sqrt(fan_in) (layer norms around 1), not HF's std 0.02 init
that makes every block nearly the identity, so the layers' predictions differ and the metrics
compared by side_by_side.py are not all trivially 1. DIR/.complete marks a finished model.
"""
import argparse
import json
import os
import shutil
import sys

CONFIGS = {
    # name: (n_embd, n_layer, n_head, rotary_dim, vocab)
    "tiny": (64, 2, 4, 8, 50400),
    "small": (512, 8, 8, 32, 50400),
    "gptj6b": (4096, 28, 16, 64, 50400),
}

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "special_tokens_map.json", "tokenizer_config.json")


TOKENIZER_DIR = os.path.join(HERE, "..", "python", "simplescope", "data", "tokenizer")


def config(name):
    """The HF GPTJConfig of a CONFIGS entry (context 2048, no dropout, untied head)."""
    from transformers import GPTJConfig

    n_embd, n_layer, n_head, rot, vocab = CONFIGS[name]
    return GPTJConfig(vocab_size=vocab, n_positions=2048, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                      rotary_dim=rot, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, tie_word_embeddings=False, bos_token_id=50256, eos_token_id=50256)


def build(name, seed=0, device="cpu", dtype="float32"):
    """The random GPTJForCausalLM of CONFIGS[name], made directly in dtype on device (eval mode)."""
    import torch
    from transformers import GPTJForCausalLM

    cfg = config(name)
    torch.manual_seed(seed)
    dt = getattr(torch, dtype)
    # made in float32 and cast: the rotary table buffer is computed in float32 and rounded to
    # dtype, as simplescope computes its own (a float16 default dtype would compute it in float16)
    with torch.device(device):
        model = GPTJForCausalLM(cfg).to(dt).eval()
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("ln_1.weight") or pname.endswith("ln_f.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, device=device, dtype=dt))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g, device=device, dtype=dt))
            else:
                p.copy_(torch.randn(p.shape, generator=g, device=device, dtype=dt) / (p.shape[-1] ** 0.5))
    return model


def make(name, out, seed=0, device="cpu", dtype="float32", model=None):
    """Writes the model of build(name, seed, device, dtype) — or the given one — to out (a no-op
    when out already holds a finished model)."""
    if os.path.exists(os.path.join(out, ".complete")):
        return out
    if model is None:
        model = build(name, seed, device, dtype)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, max_shard_size="100GB")
    tok = TOKENIZER_DIR
    for f in TOKENIZER_FILES:
        src = os.path.join(tok, f)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(tmp, f))
    with open(os.path.join(tmp, "bench_model.json"), "w") as f:
        json.dump({"config": name, "seed": seed, "dtype": dtype}, f)
    open(os.path.join(tmp, ".complete"), "w").close()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    print(make(a.config, a.out, a.seed, a.device, a.dtype))


if __name__ == "__main__":
    sys.exit(main())
