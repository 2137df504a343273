package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// FuzzFamiliesEncode encodes arbitrary strings (invalid UTF-8 included) with every trained
// family: no panic, ids inside the vocabulary, Decode and DecodeText without error, TokenString
// for each id; for the lossless families (GPT-2, Llama 3: no normalizer, byte-level),
// Decode(Encode(s)) == s. `go test -fuzz FuzzFamiliesEncode` explores further.
func FuzzFamiliesEncode(f *testing.F) {
	for _, s := range adversarial {
		f.Add(s)
	}
	f.Add("a\xffb \x80 'S\xc3 <s\xe4>")
	toks := map[string]*Tokenizer{}
	for _, kind := range families {
		tok, err := Load(familyDir(f, kind))
		if err != nil {
			f.Fatal(err)
		}
		toks[kind] = tok
	}
	f.Fuzz(func(t *testing.T, s string) {
		for kind, tok := range toks {
			ids := tok.Encode(s)
			for i, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("%s: Encode(%q)[%d] = %d outside [0, %d)", kind, s, i, id, tok.VocabSize())
				}
				_ = tok.TokenString(id)
			}
			back, err := tok.Decode(ids)
			if err != nil {
				t.Fatalf("%s: Decode(Encode(%q)): %v", kind, s, err)
			}
			if _, err := tok.DecodeText(ids); err != nil {
				t.Fatalf("%s: DecodeText(Encode(%q)): %v", kind, s, err)
			}
			if (kind == "gpt2" || kind == "llama3") && back != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", kind, s, back)
			}
			_ = tok.EncodeSpecial(s)
		}
	})
}

// TestFamiliesConcurrentEncode encodes documents from several goroutines with fresh tokenizers
// of the non-GPT-2 pipelines and compares with a sequential pass (run with -race).
func TestFamiliesConcurrentEncode(t *testing.T) {
	docs := corpus(t)[:200]
	for _, kind := range []string{"llama3", "qwen2", "llama2", "mistral"} {
		ref, err := Load(familyDir(t, kind))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := Load(familyDir(t, kind))
		want := make([][]int, len(docs))
		for i, d := range docs {
			want[i] = ref.Encode(d)
		}
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for k := range docs {
					i := (k*7 + g*53) % len(docs)
					if firstDiff(tok.Encode(docs[i]), want[i]) >= 0 {
						errs <- fmt.Sprintf("%s doc %d", kind, i)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Errorf("concurrent Encode differs: %s", e)
		}
	}
}

// sentencePieceJSON is a tiny SentencePiece-style tokenizer.json (byte fallback, Prepend and
// Replace normalizer, Llama 2's decoder and template), written out without HF, for the loader's
// fuzz seeds; metaspace switches to Mistral's Metaspace pre-tokenizer and decoder.
func sentencePieceJSON(metaspace bool) []byte {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	words := []string{"▁", "a", "b", "c", "e", "h", "l", "o", "t", "▁t", "▁a", "he", "▁the", "ll", "▁he", "▁hell", "▁hello"}
	for i, w := range words {
		vocab[w] = 259 + i
	}
	merges := [][2]string{{"▁", "t"}, {"▁", "a"}, {"h", "e"}, {"▁t", "he"}, {"l", "l"}, {"▁", "he"}, {"▁he", "ll"}, {"▁hell", "o"}}
	doc := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []map[string]any{
			{"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
			{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
			{"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair":           []any{},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}}},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}},
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab": vocab, "merges": merges},
	}
	if metaspace {
		doc["normalizer"] = nil
		doc["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
		doc["decoder"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// llama3JSON is smallTokenizerJSON with Llama 3's pre-tokenizer, ignore_merges and BOS template.
func llama3JSON(t testing.TB) []byte {
	var m map[string]any
	if err := json.Unmarshal(smallTokenizerJSON(t, 300, false, true), &m); err != nil {
		t.Fatal(err)
	}
	m["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}}}
	m["model"].(map[string]any)["ignore_merges"] = true
	m["decoder"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}
	m["added_tokens"] = []any{map[string]any{"id": 300, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
		"rstrip": false, "normalized": false, "special": true}}
	m["post_processor"] = map[string]any{"type": "TemplateProcessing",
		"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|endoftext|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
		"pair":           []any{},
		"special_tokens": map[string]any{"<|endoftext|>": map[string]any{"id": "<|endoftext|>", "ids": []int{300}, "tokens": []string{"<|endoftext|>"}}}}
	b, _ := json.Marshal(m)
	return b
}

// TestFuzzSeedsMatchHF: the hand-written tokenizer.json seeds of FuzzLoadJSON load, and agree
// with HF on the adversarial strings.
func TestFuzzSeedsMatchHF(t *testing.T) {
	for name, raw := range map[string][]byte{"sentencepiece": sentencePieceJSON(false), "metaspace": sentencePieceJSON(true), "llama3": llama3JSON(t)} {
		t.Run(name, func(t *testing.T) {
			tok, err := LoadJSON(raw)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			if bad, _ := checkParity(t, tok, adversarial, hfRefs(t, path, adversarial), 0); bad > 0 {
				t.Errorf("%d of %d texts differ from HF", bad, len(adversarial))
			}
		})
	}
}
