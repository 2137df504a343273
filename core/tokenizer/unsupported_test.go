package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnsupportedComponents: a tokenizer.json with a component or option this package does not
// implement is refused by Load with an error that names the file and the component — never
// loaded with a silent difference from HF. Each case edits a trained family's file.
func TestUnsupportedComponents(t *testing.T) {
	cases := []struct {
		kind string
		edit func(m map[string]any)
		want string
	}{
		{"gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}`)
		}, `unsupported normalizer type "BertNormalizer"`},
		{"gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "Strip", "strip_left": true, "strip_right": true}`)
		}, `normalizer type "Strip"`},
		{"gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "StripAccents"}`) }, `normalizer type "StripAccents"`},
		{"gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "Nmt"}`) }, `normalizer type "Nmt"`},
		{"gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "Precompiled", "precompiled_charsmap": ""}`)
		}, `normalizer type "Precompiled"`},
		{"gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "ByteLevel"}`) }, `normalizer type "ByteLevel"`},
		{"gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Strip", "strip_left": true, "strip_right": false}]}`)
		}, `normalizer type "Strip"`},
		{"gpt2", func(m map[string]any) { m["pre_tokenizer"] = jsonOf(`{"type": "Whitespace"}`) }, `pre_tokenizer type "Whitespace"`},
		{"gpt2", func(m map[string]any) { m["pre_tokenizer"] = jsonOf(`{"type": "WhitespaceSplit"}`) }, `pre_tokenizer type "WhitespaceSplit"`},
		{"gpt2", func(m map[string]any) { m["pre_tokenizer"] = jsonOf(`{"type": "BertPreTokenizer"}`) }, `pre_tokenizer type "BertPreTokenizer"`},
		{"gpt2", func(m map[string]any) { m["pre_tokenizer"] = jsonOf(`{"type": "Punctuation", "behavior": "Isolated"}`) }, `pre_tokenizer type "Punctuation"`},
		{"gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "CharDelimiterSplit", "delimiter": " "}`)
		}, `pre_tokenizer type "CharDelimiterSplit"`},
		{"gpt2", func(m map[string]any) { m["pre_tokenizer"] = jsonOf(`{"type": "UnicodeScripts"}`) }, `pre_tokenizer type "UnicodeScripts"`},
		{"gpt2", func(m map[string]any) { m["pre_tokenizer"] = jsonOf(`{"type": "FixedLength", "length": 5}`) }, `pre_tokenizer type "FixedLength"`},
		{"gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}, {"type": "Digits", "individual_digits": true}]}`)
		}, "ByteLevel must come last"},
		{"gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?<=a)b"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}`)
		}, "Split pattern: regex \"(?<=a)b\""},
		{"gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}`)
		}, `escape \w is not supported`},
		{"gpt2", func(m map[string]any) {
			m["decoder"] = jsonOf(`{"type": "WordPiece", "prefix": "##", "cleanup": true}`)
		}, `decoder type "WordPiece"`},
		{"gpt2", func(m map[string]any) { m["decoder"] = jsonOf(`{"type": "BPEDecoder", "suffix": "</w>"}`) }, `decoder type "BPEDecoder"`},
		{"gpt2", func(m map[string]any) {
			m["decoder"] = jsonOf(`{"type": "CTC", "pad_token": "<pad>", "word_delimiter_token": "|", "cleanup": true}`)
		}, `decoder type "CTC"`},
		{"gpt2", func(m map[string]any) {
			m["post_processor"] = jsonOf(`{"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": false}`)
		}, `post_processor type "RobertaProcessing"`},
		{"gpt2", func(m map[string]any) {
			m["post_processor"] = jsonOf(`{"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}`)
		}, `post_processor type "BertProcessing"`},
		{"gpt2", func(m map[string]any) { model(m)["type"] = "WordPiece" }, `model.type "WordPiece"`},
		{"gpt2", func(m map[string]any) { model(m)["type"] = "Unigram" }, `model.type "Unigram"`},
		{"gpt2", func(m map[string]any) { model(m)["type"] = "WordLevel" }, `model.type "WordLevel"`},
		{"gpt2", func(m map[string]any) { model(m)["dropout"] = 0.1 }, "model.dropout 0.1"},
		{"gpt2", func(m map[string]any) { model(m)["continuing_subword_prefix"] = "##" }, "model.continuing_subword_prefix"},
		{"gpt2", func(m map[string]any) { model(m)["end_of_word_suffix"] = "</w>" }, "model.end_of_word_suffix"},
		{"gpt2", func(m map[string]any) { model(m)["unk_token"] = "<nope>" }, `model.unk_token "<nope>" is not in the model's vocab`},
		{"gpt2", func(m map[string]any) {
			m["truncation"] = jsonOf(`{"direction": "Right", "max_length": 512, "strategy": "LongestFirst", "stride": 0}`)
		}, "unsupported truncation"},
		{"gpt2", func(m map[string]any) {
			m["padding"] = jsonOf(`{"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "<pad>"}`)
		}, "unsupported padding"},
		{"gpt2", func(m map[string]any) { m["version"] = "2.0" }, "unsupported version"},
		{"llama2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}`)
		}, `Metaspace with prepend_scheme "first" after a normalizer`},
		{"mistral", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}]}`)
		}, "more than one Metaspace"},
		{"mistral", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "add_prefix_space": false}`)
		}, "add_prefix_space false does not match prepend_scheme"},
		{"llama2", func(m map[string]any) {
			m["decoder"] = jsonOf(`{"type": "Replace", "pattern": {"String": ""}, "content": " "}`)
		}, "empty String pattern"},
		{"llama3", func(m map[string]any) {
			pp := m["post_processor"].(map[string]any)["processors"].([]any)[1].(map[string]any)
			pp["special_tokens"] = map[string]any{}
		}, "missing from special_tokens"},
		{"llama3", func(m map[string]any) {
			l := m["added_tokens"].([]any)
			l[0], l[1] = l[1], l[0]
		}, "but HF tokenizers assigns it"},
		{"gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "NFKC"}`)
			addTokens(m, `{"content": "ﬁx", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}`,
				`{"content": "fix", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}`)
		}, "the same text \"fix\" once normalized"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			dir := familyVariant(t, c.kind, c.edit)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tokenizer.json") {
				t.Errorf("Load: %v, want an error naming tokenizer.json and mentioning %q", err, c.want)
			}
			raw, _ := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
			if _, err2 := LoadJSON(raw); (err2 == nil) != (err == nil) {
				t.Errorf("LoadJSON error %v, Load error %v", err2, err)
			}
		})
	}
}
