"""Build the bundled demo corpus python/simplescope/data/demo.jsonl.zst.

It takes the documents the `seed` preset selects from the repository's real-text sample
(testdata/corpus/sample.jsonl.zst) (the first 2000
documents with len(text.split(" ")) < 200 and len(text) < 1600), then a deterministic sample of
about 300 of them spread over the corpus kinds (meta.pile_set_name: fortunes in six languages,
code, changelogs, docs, law), as evenly as the kinds allow, kept in their original order.

Usage (from the repository root):
    .venv/bin/python python/simplescope/data/make_demo_corpus.py \
        [--src testdata/corpus/sample.jsonl.zst] [--out python/simplescope/data/demo.jsonl.zst] [--n 300]
"""
import argparse
import collections
import json
import os
import random

import zstandard

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))  # the repository


def read_jsonl_zst(path):
    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


def seed_preset(docs):
    return [(i, d) for i, d in enumerate(docs[:2000])
            if len(d["text"].split(" ")) < 200 and len(d["text"]) < 1600]


def quotas(sizes, n):
    """Water-filling: every kind gets the same share, small kinds give all they have."""
    left, out = n, {}
    pending = sorted(sizes, key=lambda k: (sizes[k], k))
    while pending:
        share = left // len(pending)
        k = pending.pop(0)
        out[k] = min(sizes[k], share if pending else left)
        left -= out[k]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(ROOT, "testdata", "corpus", "sample.jsonl.zst"))
    ap.add_argument("--out", default=os.path.join(ROOT, "python", "simplescope", "data", "demo.jsonl.zst"))
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()

    kept = seed_preset(read_jsonl_zst(a.src))
    by_kind = collections.defaultdict(list)
    for i, d in kept:
        by_kind[d["meta"].get("pile_set_name", "unknown")].append((i, d))
    q = quotas({k: len(v) for k, v in by_kind.items()}, a.n)
    rng = random.Random(42)
    chosen = []
    for kind in sorted(by_kind):
        chosen += rng.sample(by_kind[kind], q[kind])
    chosen.sort(key=lambda x: x[0])

    lines = [json.dumps({"text": d["text"], "meta": {**d["meta"], "sample_index": i}},
                        ensure_ascii=False) for i, d in chosen]
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=19).compress(payload))
    counts = collections.Counter(d["meta"].get("pile_set_name") for _, d in chosen)
    print(f"{a.out}: {len(chosen)} documents, {len(payload)} bytes of JSONL, "
          f"{os.path.getsize(a.out)} bytes compressed; kinds {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
