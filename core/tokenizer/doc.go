// Package tokenizer is GPT-2 / GPT-J byte-level BPE with exact parity with HF `tokenizers`.
//
// Load reads a model directory holding a HF tokenizer.json (or, as a fallback, vocab.json +
// merges.txt + added_tokens.json). Encode follows HF's pipeline step for step:
//
//  1. added tokens are split out of the text, the non-normalized (special) ones first, then the
//     normalized ones in what remains, each pass leftmost-longest (HF's AddedVocabulary);
//  2. every remaining piece is pre-tokenized with an exact, hand-written scanner for the GPT-2
//     pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
//     including the lookahead alternative that Go's regexp cannot express;
//  3. each pre-token's bytes are mapped to the byte-level alphabet and merged by BPE rank
//     (lowest rank first, leftmost on ties), with a bounded, concurrency-safe word cache.
//
// The byte ↔ character table of the byte-level alphabet is taken from github.com/sugarme/tokenizer
// (pretokenizer.BytesChar); its pre-tokenizer (which drops the `\s+(?!\S)` alternative), its
// encoding pipeline (which drops added tokens written in the text) and its log.Fatal error paths
// are not used.
//
// Added-token ids: HF tokenizers does not read the "id" of tokenizer.json's added_tokens; it
// assigns ids in list order after the vocabulary (and only warns on a difference). Load keeps the
// file's ids and refuses a file where they differ from HF's assignment, so an id never disagrees
// with either. GPT-J's file is consistent: <|endoftext|> 50256, <|extratoken_N|> 50256+N.
//
// Invalid UTF-8 input: every byte that is not part of a valid UTF-8 sequence is a character of the
// "other" class (neither letter, number nor whitespace, like punctuation); the BPE model encodes it
// from its byte-level character like any byte, so Decode(Encode(s)) == s holds for every byte
// string. Decode returns the raw
// decoded bytes (no U+FFFD substitution), so decoding a prefix that cuts a UTF-8 sequence returns
// the partial bytes.
//
// BOS is not added by Encode: callers prepend BOS() when they want it (prepend_bos).
//
// A Tokenizer is immutable after Load apart from its internal cache and is safe for concurrent use.
package tokenizer
