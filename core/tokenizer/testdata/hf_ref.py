"""HF `tokenizers` references for the Go tests of the tokenizer families (testdata/hf_encode.py
serves the GPT-J fixture).

Usage:
  hf_ref.py train KIND TEXTS.jsonl OUTDIR VOCAB   train a small tokenizer of KIND on the texts and
                                                  write OUTDIR/tokenizer.json and
                                                  OUTDIR/tokenizer_config.json; KIND is gpt2,
                                                  neox, llama3, qwen2, llama2 or mistral
  hf_ref.py ref TOKENIZER_JSON IN.jsonl           per input line one JSON object:
                                                  {"ids": encode(add_special_tokens=False),
                                                   "pre", "post": the ids that encode with
                                                   add_special_tokens=True puts before and after
                                                   them (checked to be of that form),
                                                   "text": decode(ids, skip_special_tokens=False),
                                                   null when it is the input text}
  hf_ref.py decode TOKENIZER_JSON IDS.jsonl       per input line (a JSON list of ids) the JSON
                                                  string decode(ids, skip_special_tokens=False)
  hf_ref.py split PATTERNS.json IN.jsonl          PATTERNS.json is a list of [pattern, behavior,
                                                  invert]; per input line a JSON list with, per
                                                  pattern, the pieces of Split(Regex(pattern))
                                                  or {"error": message}
  hf_ref.py special DIR...                       per DIR one line {"bos": ..., "eos": ...}: the
                                                  BOS and EOS ids of transformers' AutoTokenizer
                                                  for DIR (null when it has none)
  hf_ref.py splitlen PATTERN IN.jsonl             per input line the UTF-8 byte lengths of the
                                                  pieces of Split(Regex(PATTERN), "isolated")
Input lines of IN.jsonl / TEXTS.jsonl are JSON objects with a "text" field; output goes to stdout.
Training is deterministic for a given input (one thread).
"""
import json
import os
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import (  # noqa: E402
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def byte_level(kind, docs, vocab):
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    if kind in ("neox", "qwen2"):
        tok.normalizer = normalizers.NFC()
    if kind in ("gpt2", "neox"):
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = LLAMA3 if kind == "llama3" else QWEN2
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    # Special tokens after the vocabulary, as in the real files.
    if kind in ("gpt2", "neox"):
        tok.add_special_tokens(["<|endoftext|>"])
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
        config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_prefix_space": False}
        if kind == "neox":
            # GPT-NeoX adds runs of spaces as normalized, non-special tokens.
            tok.add_special_tokens(["<|padding|>"])
            tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in (24, 8, 4, 2)])
            tok.add_tokens([AddedToken("simplescope", normalized=True, special=False)])
    elif kind == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        tok.add_special_tokens(specials)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[("<|begin_of_text|>", bos)]),
        ])
        config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    else:  # qwen2
        tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {"bos_token": None, "eos_token": "<|endoftext|>", "add_prefix_space": False}
    return json.loads(tok.to_str()), config


def sentencepiece(kind, docs, vocab):
    """SentencePiece-style BPE with byte fallback (Llama 2, Mistral): <unk> <s> </s>, then the
    256 <0xNN> byte tokens, then the merges, trained on Metaspace words."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  limit_alphabet=150)
    tok.train_from_iterator(docs, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    if kind == "llama2":
        # The layout of Llama 2's tokenizer.json ("legacy"): the normalizer adds the prefix ▁
        # and replaces spaces; no pre-tokenizer.
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    else:  # mistral: the Metaspace layout (prefix only at the start of the text)
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.add_tokens([AddedToken("simplescope", normalized=True, special=False)])
    doc = json.loads(tok.to_str())
    if kind == "llama2":
        doc["pre_tokenizer"] = None
    # The byte tokens are plain vocabulary entries in Llama 2, not added tokens.
    doc["added_tokens"] = [a for a in doc["added_tokens"] if a["content"] not in byte_tokens]
    config = {"add_bos_token": True, "add_eos_token": False,
              "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                            "rstrip": False, "single_word": False, "special": True},
              "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False,
                            "rstrip": False, "single_word": False, "special": True},
              "unk_token": "<unk>"}
    return doc, config


def main():
    mode = sys.argv[1]
    out = sys.stdout
    if mode == "train":
        kind, docs, outdir, vocab = sys.argv[2], texts(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        if kind in ("llama2", "mistral"):
            doc, config = sentencepiece(kind, docs, vocab)
        else:
            doc, config = byte_level(kind, docs, vocab)
        os.makedirs(outdir, exist_ok=True)
        with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        with open(os.path.join(outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        Tokenizer.from_file(os.path.join(outdir, "tokenizer.json"))  # the file loads
    elif mode == "ref":
        tok = Tokenizer.from_file(sys.argv[2])
        for t in texts(sys.argv[3]):
            enc = tok.encode(t, add_special_tokens=False)
            ids = enc.ids
            special = tok.post_process(enc, add_special_tokens=True).ids
            pre = next(i for i in range(len(special) + 1)
                       if special[i:i + len(ids)] == ids or i == len(special))
            if special[pre:pre + len(ids)] != ids:
                sys.exit(f"encode(add_special_tokens=True) of {t[:40]!r} does not hold the ids")
            text = tok.decode(ids, skip_special_tokens=False)
            out.write(json.dumps({"ids": ids, "pre": special[:pre], "post": special[pre + len(ids):],
                                  "text": None if text == t else text},
                                 ensure_ascii=False) + "\n")
    elif mode == "decode":
        tok = Tokenizer.from_file(sys.argv[2])
        with open(sys.argv[3], encoding="utf-8") as f:
            for line in f:
                out.write(json.dumps(tok.decode(json.loads(line), skip_special_tokens=False),
                                     ensure_ascii=False) + "\n")
    elif mode == "split":
        with open(sys.argv[2], encoding="utf-8") as f:
            specs = json.load(f)
        splitters = []
        for pattern, behavior, invert in specs:
            try:
                splitters.append(pre_tokenizers.Split(Regex(pattern), behavior=behavior, invert=invert))
            except Exception as e:  # noqa: BLE001 - report what HF refuses
                splitters.append(str(e) or "error")
        for t in texts(sys.argv[3]):
            row = []
            for s in splitters:
                if isinstance(s, str):
                    row.append({"error": s})
                else:
                    row.append([p for p, _ in s.pre_tokenize_str(t)])
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif mode == "special":
        import warnings
        warnings.filterwarnings("ignore")
        from transformers import AutoTokenizer
        for d in sys.argv[2:]:
            tok = AutoTokenizer.from_pretrained(d)
            out.write(json.dumps({"bos": tok.bos_token_id, "eos": tok.eos_token_id}) + "\n")
    elif mode == "splitlen":
        s = pre_tokenizers.Split(Regex(sys.argv[2]), behavior="isolated", invert=False)
        for t in texts(sys.argv[3]):
            out.write(json.dumps([len(p.encode("utf-8")) for p, _ in s.pre_tokenize_str(t)]) + "\n")
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
