"""Write GPT-J config.json files and what transformers reads from them.

usage: make_configs.py OUTDIR
Each OUTDIR/<case>/ gets config.json and expected.json, the second holding the values
transformers' GPTJConfig.from_pretrained reports (n_inner null → 4*n_embd as modeling_gptj does;
an eos list → its first id; a null id → -1).
"""
import json
import os
import sys

from transformers import GPTJConfig


def expected(cfg):
    def tok(v):
        if isinstance(v, list):
            v = v[0] if v else None
        return -1 if v is None else v
    return {
        "NEmbd": cfg.n_embd, "NLayer": cfg.n_layer, "NHead": cfg.n_head, "RotaryDim": cfg.rotary_dim,
        "VocabSize": cfg.vocab_size, "NPositions": cfg.n_positions,
        "NInner": cfg.n_inner if cfg.n_inner is not None else 4 * cfg.n_embd,
        "LayerNormEpsilon": cfg.layer_norm_epsilon, "ActivationFunction": cfg.activation_function,
        "BOSTokenID": tok(cfg.bos_token_id), "EOSTokenID": tok(cfg.eos_token_id),
        "ModelType": cfg.model_type, "TieWordEmbeddings": cfg.tie_word_embeddings,
    }


def main():
    out = sys.argv[1]
    saved = {
        "gptj-6b-defaults": GPTJConfig(),
        "tiny": GPTJConfig(n_embd=64, n_layer=3, n_head=4, rotary_dim=8, vocab_size=123, n_positions=77,
                           n_inner=100, layer_norm_epsilon=1e-6, activation_function="gelu",
                           bos_token_id=1, eos_token_id=2, tie_word_embeddings=True),
        "eos-list": GPTJConfig(n_embd=32, n_layer=2, n_head=2, rotary_dim=4, vocab_size=50, eos_token_id=[7, 8]),
    }
    for name, cfg in saved.items():
        d = os.path.join(out, name)
        cfg.save_pretrained(d)
    # A hand-trimmed file: only the required fields; everything else takes HF's defaults.
    d = os.path.join(out, "minimal")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "gptj", "n_embd": 256, "n_layer": 2, "n_head": 4, "vocab_size": 1000}, f)
    for name in list(saved) + ["minimal"]:
        d = os.path.join(out, name)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(expected(GPTJConfig.from_pretrained(d)), f, indent=1)


if __name__ == "__main__":
    main()
