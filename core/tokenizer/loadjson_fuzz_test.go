package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// smallTokenizerJSON derives a small, valid tokenizer.json from the GPT-J fixture: the tokens
// with id < n, the merges among them, and <|endoftext|> as the next id. pairs writes the merges
// as [a, b] lists (newer tokenizers versions) instead of "a b" strings.
func smallTokenizerJSON(t testing.TB, n int, prefixSpace, pairs bool) []byte {
	t.Helper()
	raw, err := os.ReadFile(fixtureJSON())
	if err != nil {
		t.Fatal(err)
	}
	var full struct {
		Model struct {
			Vocab  map[string]int `json:"vocab"`
			Merges []string       `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &full); err != nil {
		t.Fatalf("%s: %v", fixtureJSON(), err)
	}
	vocab := map[string]int{}
	for tok, id := range full.Model.Vocab {
		if id < n {
			vocab[tok] = id
		}
	}
	var merges []any
	for _, m := range full.Model.Merges {
		a, b, _ := strings.Cut(m, " ")
		_, okA := vocab[a]
		_, okB := vocab[b]
		_, okC := vocab[a+b]
		if okA && okB && okC {
			if pairs {
				merges = append(merges, []string{a, b})
			} else {
				merges = append(merges, m)
			}
		}
	}
	doc := map[string]any{
		"added_tokens":  []map[string]any{{"id": n, "content": "<|endoftext|>", "normalized": false, "special": true}},
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": prefixSpace, "use_regex": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzLoadJSON feeds arbitrary tokenizer.json bytes (and a text) to LoadJSON: it must never
// panic or exhaust memory; a tokenizer it accepts must agree with Load on the same file and
// encode the text to ids inside its vocabulary that decode without error.
// `go test -fuzz FuzzLoadJSON` explores further.
func FuzzLoadJSON(f *testing.F) {
	f.Add(smallTokenizerJSON(f, 300, false, false), "Hello world<|endoftext|> it's 1135")
	f.Add(smallTokenizerJSON(f, 270, true, true), " ünïcode\n\n  spaces")
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}`), "a")
	f.Add([]byte(`{}`), "")
	f.Add(sentencePieceJSON(false), "hello the\xff 日本 <s>a</s>")
	f.Add(sentencePieceJSON(true), " hello<s>the  ")
	f.Add(llama3JSON(f), "It'S 12345 \r\n\n  x<|endoftext|>")
	// A huge id once made the id tables exhaust memory: a fatal error, not a panic.
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 10000000000000}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}}`), "a")
	f.Fuzz(func(t *testing.T, raw []byte, text string) {
		tok, err := LoadJSON(raw)
		dir := t.TempDir()
		if werr := os.WriteFile(filepath.Join(dir, "tokenizer.json"), raw, 0o644); werr != nil {
			t.Fatal(werr)
		}
		tok2, err2 := Load(dir)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("LoadJSON error %v but Load error %v", err, err2)
		}
		if err != nil {
			return
		}
		ids := tok.Encode(text)
		if ids2 := tok2.Encode(text); len(ids2) != len(ids) {
			t.Fatalf("LoadJSON and Load encode %q to %v and %v", text, ids, ids2)
		}
		for i, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q)[%d] = %d outside [0, %d)", text, i, id, tok.VocabSize())
			}
			_ = tok.TokenString(id)
		}
		if _, err := tok.Decode(ids); err != nil {
			t.Fatalf("Decode(Encode(%q)): %v", text, err)
		}
	})
}
