// Package tokenizer is BPE tokenization from a HF tokenizer.json with exact parity with HF
// `tokenizers`: byte-level BPE (GPT-2, GPT-J, GPT-NeoX, Llama 3, Qwen2) and SentencePiece-style
// BPE with byte fallback (Llama 2, Mistral). The reference is what HF tokenizers makes of the
// tokenizer.json file itself; a component or option this package does not implement is refused
// by Load with an error that names it, never run with a difference from HF.
//
// Load reads a model directory holding a tokenizer.json (or, as a fallback, GPT-2's
// vocab.json + merges.txt + added_tokens.json). Encode follows HF's pipeline step for step:
//
//  1. added tokens are split out of the text, the non-normalized ones first, then the normalized
//     ones in the normalized text (by their normalized content), each pass leftmost-longest with
//     single_word, lstrip and rstrip as HF's AddedVocabulary applies them;
//  2. normalizer: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace (string or regex), Sequence;
//  3. pre-tokenizer: ByteLevel (add_prefix_space, use_regex; last in a Sequence), Split (string
//     or regex pattern, every behaviour, invert), Metaspace (replacement, prepend_scheme always,
//     first or never, split), Digits, Sequence;
//  4. model: BPE with byte_fallback (<0xNN> tokens), unk_token and fuse_unk, ignore_merges (Llama
//     3), merges as "a b" strings or [a, b] pairs; pre-tokens are merged by rank (lowest first,
//     leftmost on ties) with a bounded, concurrency-safe word cache.
//
// EncodeSpecial adds the post-processor's special tokens (TemplateProcessing, ByteLevel,
// Sequence), as HF's encode(text, add_special_tokens=True). Decode and DecodeText run the decoder
// (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence; none joins tokens with
// spaces as HF does).
//
// Refused: the WordPiece, Unigram and WordLevel models, BPE dropout, continuing_subword_prefix and
// end_of_word_suffix; the BertNormalizer, Strip, StripAccents, Nmt, Precompiled and ByteLevel
// normalizers; the Whitespace, WhitespaceSplit, BertPreTokenizer, Punctuation,
// CharDelimiterSplit, UnicodeScripts and FixedLength pre-tokenizers, ByteLevel before another
// pre-tokenizer, more than one Metaspace, Metaspace with prepend_scheme "first" after a
// normalizer (HF reads original offsets there); the WordPiece, BPEDecoder and CTC decoders; the
// BertProcessing and RobertaProcessing post-processors; non-null truncation and padding; an
// unk_token missing from the vocab; added-token ids that differ from the ids HF assigns.
//
// Regular expressions. HF compiles Split and Replace patterns with Oniguruma, whose lookahead
// (`\s+(?!\S)`) and Unicode classes Go's regexp lacks. regex.go is a small backtracking matcher
// for the part of Oniguruma's syntax tokenizer.json patterns use (see its comment for the exact
// subset; anything else is refused when the file is loaded), with the onig crate's iteration over
// matches (empty matches included). The GPT-2, Llama 3 and Qwen2 patterns run on hand-written
// scanners (scan.go), fuzzed against the matcher; both are compared with HF's Split on the
// corpus. Unicode tables are Go's (character classes, normalization from golang.org/x/text), which
// can differ from HF's for characters assigned in a later Unicode version.
//
// The byte ↔ character table of the byte-level alphabet is taken from github.com/sugarme/tokenizer
// (pretokenizer.BytesChar); its pre-tokenizer (which drops the `\s+(?!\S)` alternative), its
// encoding pipeline (which drops added tokens written in the text) and its log.Fatal error paths
// are not used.
//
// Added-token ids: HF tokenizers does not read the "id" of tokenizer.json's added_tokens; it
// assigns ids in list order (a token in the vocabulary keeps its id, a new one gets the next id
// from the vocabulary's size on) and only warns on a difference. Load keeps the file's ids and
// refuses a file where they differ from HF's assignment, so an id never disagrees with either.
// GPT-J's file is consistent: <|endoftext|> 50256, <|extratoken_N|> 50256+N.
//
// Invalid UTF-8 input (Go strings may hold any bytes; HF only ever sees valid text): every byte
// that is not part of a valid UTF-8 sequence is one character that belongs to no Unicode category
// (like punctuation for the GPT-2 pattern); a byte-level model encodes it from its byte-level
// character like any byte, so Decode(Encode(s)) == s holds for every byte string with a lossless
// pipeline (GPT-2, GPT-J, Llama 3); a character model encodes it by byte fallback or as unknown;
// normalizers leave it as it is. Decode returns the raw decoded bytes (no U+FFFD substitution),
// so decoding a prefix that cuts a UTF-8 sequence returns the partial bytes; DecodeText is HF's
// decode exactly. An id outside the vocabulary is an error in Decode (HF skips it).
//
// BOS and EOS: BOS() and EOS() are the tokens tokenizer_config.json names (else
// special_tokens_map.json; else, for BOS, the special token the post-processor's template puts
// first). Encode never adds BOS: callers prepend BOSToken() for prepend_bos, which is an error
// that says so when the tokenizer names no BOS (Qwen2's config sets bos_token to null).
//
// A Tokenizer is immutable after Load apart from its internal cache and is safe for concurrent use.
package tokenizer
