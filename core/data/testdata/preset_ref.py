"""Independent Python reimplementation of a core/data preset, used as the test reference.

It reads the corpus the way the Go reader is documented to (JSONL or plain text, optionally
Zstandard-compressed, chosen by file name; lines of only ASCII white space are not documents),
filters with Python's own len(text) and len(text.split(" ")), and shuffles with the call the
Patchscopes notebook makes through datasets.Dataset.shuffle(seed=...):
np.random.default_rng(seed).permutation(len(ds)).

Usage: preset_ref.py FILE [--max-docs N] [--max-words W] [--max-chars C] [--shuffle --seed S]
                          [--skip K] [--take T]
Prints JSON: {"read": ..., "kept": ..., "docs": [{"index", "line", "text"}, ...]}.
"""
import argparse
import json
import sys

import numpy as np
import zstandard

BLANK = b" \t\r\v\f"


def lines_of(path):
    lower = path.lower()
    with open(path, "rb") as f:
        if lower.endswith(".zst"):
            data = zstandard.ZstdDecompressor().stream_reader(f).read()
        else:
            data = f.read()
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def documents(path):
    is_jsonl = ".jsonl" in path.lower()
    index = 0
    for lineno, raw in enumerate(lines_of(path), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.strip(BLANK) == b"":
            continue
        s = raw.decode("utf-8")
        text = json.loads(s)["text"] if is_jsonl else s
        assert isinstance(text, str)
        yield {"index": index, "line": lineno, "text": text}
        index += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--max-docs", type=int, default=0)
    ap.add_argument("--max-words", type=int, default=0)
    ap.add_argument("--max-chars", type=int, default=0)
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--take", type=int, default=0)
    a = ap.parse_args()

    docs = []
    for d in documents(a.file):
        if a.max_docs and len(docs) >= a.max_docs:
            break
        docs.append(d)
    read = len(docs)

    def keep(t):
        return (not a.max_words or len(t.split(" ")) < a.max_words) and (
            not a.max_chars or len(t) < a.max_chars)

    kept = [d for d in docs if keep(d["text"])]
    if a.shuffle:
        perm = np.random.default_rng(a.seed).permutation(len(kept))
        kept = [kept[int(i)] for i in perm]
    end = a.skip + a.take if a.take else len(kept)
    json.dump({"read": read, "kept": len(kept), "docs": kept[a.skip:end]}, sys.stdout)


if __name__ == "__main__":
    main()
