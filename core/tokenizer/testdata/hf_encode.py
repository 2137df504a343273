"""Reference token ids from HF `tokenizers`, for the Go tests and the side-by-side benchmark.

Usage:
  hf_encode.py encode TOKENIZER_JSON IN.jsonl      one JSON list of ids per input line {"text": ...}
  hf_encode.py pretok TOKENIZER_JSON IN.jsonl      one JSON list of pre-token strings per line
  hf_encode.py model TOKENIZER_JSON IN.jsonl       ids of the BPE model alone on each text, taken as
                                                   one pre-token in the byte-level alphabet
  hf_encode.py info TOKENIZER_JSON                 {"vocab_size": ..., "token_to_id": {...}}
  hf_encode.py bench TOKENIZER_JSON IN.jsonl REPS  one untimed warm-up pass (as Go's benchmark runner
                                                   does), then encode every text REPS times on one
                                                   thread, print {"tokens": ..., "seconds": ..., "tokens_per_s": ...}
Input lines are JSON objects with a "text" field; output goes to stdout.
"""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer  # noqa: E402


def texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def main():
    mode, tok_path = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(tok_path)
    out = sys.stdout
    if mode == "encode":
        for t in texts(sys.argv[3]):
            out.write(json.dumps(tok.encode(t, add_special_tokens=False).ids) + "\n")
    elif mode == "pretok":
        for t in texts(sys.argv[3]):
            out.write(json.dumps([p for p, _ in tok.pre_tokenizer.pre_tokenize_str(t)]) + "\n")
    elif mode == "model":
        for t in texts(sys.argv[3]):
            out.write(json.dumps([tk.id for tk in tok.model.tokenize(t)]) + "\n")
    elif mode == "info":
        names = ["<|endoftext|>", "<|extratoken_1|>", "<|extratoken_7|>", "<|extratoken_143|>"]
        out.write(json.dumps({"vocab_size": tok.get_vocab_size(with_added_tokens=True),
                              "token_to_id": {n: tok.token_to_id(n) for n in names}}) + "\n")
    elif mode == "bench":
        docs, reps = texts(sys.argv[3]), int(sys.argv[4])
        for t in docs:
            tok.encode(t, add_special_tokens=False)
        n = 0
        t0 = time.perf_counter()
        for _ in range(reps):
            for t in docs:
                n += len(tok.encode(t, add_special_tokens=False).ids)
        dt = time.perf_counter() - t0
        out.write(json.dumps({"tokens": n, "seconds": dt, "tokens_per_s": n / dt}) + "\n")
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
