package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
	sgtok "github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/normalizer"
	"github.com/sugarme/tokenizer/pretokenizer"
	sgpretrained "github.com/sugarme/tokenizer/pretrained"
)

// TestAddedTokenIDs checks the ids of <|endoftext|> and the extra tokens, VocabSize and BOS
// against HF tokenizers.
func TestAddedTokenIDs(t *testing.T) {
	tok := gptj(t)
	raw := testutil.RunPython(t, filepath.Join("testdata", "hf_encode.py"), "info", fixtureJSON())
	var info struct {
		VocabSize int            `json:"vocab_size"`
		TokenToID map[string]int `json:"token_to_id"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("info output %q: %v", raw, err)
	}
	if tok.VocabSize() != info.VocabSize {
		t.Errorf("VocabSize() = %d, HF %d", tok.VocabSize(), info.VocabSize)
	}
	if tok.BOS() != info.TokenToID["<|endoftext|>"] {
		t.Errorf("BOS() = %d, HF id of <|endoftext|> %d", tok.BOS(), info.TokenToID["<|endoftext|>"])
	}
	for name, id := range info.TokenToID {
		t.Run(name, func(t *testing.T) {
			if got := tok.Encode(name); len(got) != 1 || got[0] != id {
				t.Errorf("Encode(%q) = %v, HF id %d", name, got, id)
			}
			if s := tok.TokenString(id); s != name {
				t.Errorf("TokenString(%d) = %q, want %q", id, s, name)
			}
		})
	}
}

// TestSugarmeStockPreTokenizerDiverges shows why the project has its own scanner: sugarme's
// ByteLevel pre-tokenizer drops `\s+(?!\S)` and splits "a\n\nb" unlike HF; ours agrees with HF.
func TestSugarmeStockPreTokenizerDiverges(t *testing.T) {
	inputs := []string{"a\n\nb", "x   y", "end  "}
	var want [][]string
	hf(t, "pretok", fixtureJSON(), inputs, &want)
	enc, _, err := byteLevel()
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range inputs {
		bl := pretokenizer.NewByteLevel()
		bl.SetAddPrefixSpace(false)
		out, err := bl.PreTokenize(sgtok.NewPreTokenizedString(in))
		if err != nil {
			t.Fatalf("sugarme PreTokenize(%q): %v", in, err)
		}
		var stock []string
		for _, p := range out.GetSplits(normalizer.OriginalTarget, sgtok.Byte) {
			stock = append(stock, p.Value)
		}
		var ours []string
		preTokenize(in, func(p string) {
			var sb strings.Builder
			for j := 0; j < len(p); j++ {
				sb.WriteString(enc[p[j]])
			}
			ours = append(ours, sb.String())
		})
		t.Logf("%q: HF %q, sugarme %q, ours %q", in, want[i], stock, ours)
		if strings.Join(ours, "\x00") != strings.Join(want[i], "\x00") {
			t.Errorf("%q: ours %q, HF %q", in, ours, want[i])
		}
		if in == "a\n\nb" && strings.Join(stock, "\x00") == strings.Join(want[i], "\x00") {
			t.Errorf("%q: sugarme's stock pre-tokenizer now agrees with HF (%q); the divergence this package works around is gone", in, stock)
		}
	}
}

// writeVariant copies the fixture tokenizer.json into a temp dir after edit changes its JSON.
func writeVariant(t *testing.T, edit func(m map[string]any)) string {
	t.Helper()
	raw, err := os.ReadFile(fixtureJSON())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestVariants checks options GPT-J does not use against HF on edited copies of tokenizer.json:
// lstrip/rstrip on added tokens, add_prefix_space, use_regex=false.
func TestVariants(t *testing.T) {
	texts := []string{"a <|extratoken_7|>  b", "x\t<|extratoken_8|>\n y", "<|extratoken_7|>", " lead", "no lead",
		"q <|endoftext|> <|extratoken_8|> r", "it's  2 go\n\n"}
	texts = append(texts, corpus(t)[:50]...)
	variants := []struct {
		name string
		edit func(m map[string]any)
	}{
		{"lstrip rstrip", func(m map[string]any) {
			for _, a := range m["added_tokens"].([]any) {
				at := a.(map[string]any)
				switch at["content"] {
				case "<|extratoken_7|>":
					at["lstrip"] = true
				case "<|extratoken_8|>", "<|endoftext|>":
					at["rstrip"], at["lstrip"] = true, at["content"] == "<|endoftext|>"
				}
			}
		}},
		{"add_prefix_space", func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["add_prefix_space"] = true
		}},
		{"no regex", func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["use_regex"] = false
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := writeVariant(t, v.edit)
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var want [][]int
			hf(t, "encode", filepath.Join(dir, "tokenizer.json"), texts, &want)
			for i, s := range texts {
				if got := tok.Encode(s); firstDiff(got, want[i]) >= 0 {
					j := firstDiff(got, want[i])
					t.Errorf("Encode(%.60q): first difference at %d: got %v, HF %v", s, j, window(got, j), window(want[i], j))
				}
			}
		})
	}
}

// TestFallbackLayout loads vocab.json + merges.txt + added_tokens.json (+ special tokens files)
// without tokenizer.json and compares with the tokenizer.json load (itself checked against HF).
func TestFallbackLayout(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"} {
		raw, err := os.ReadFile(filepath.Join(fixtureDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fb, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref := gptj(t)
	if fb.VocabSize() != ref.VocabSize() || fb.BOS() != ref.BOS() {
		t.Errorf("fallback VocabSize %d BOS %d, tokenizer.json %d %d", fb.VocabSize(), fb.BOS(), ref.VocabSize(), ref.BOS())
	}
	texts := corpus(t)[:1000]
	for _, c := range edgeCases {
		texts = append(texts, c.input)
	}
	for i, s := range texts {
		got, want := fb.Encode(s), ref.Encode(s)
		if j := firstDiff(got, want); j >= 0 {
			t.Errorf("text %d %.40q: fallback %v, tokenizer.json %v at %d", i, s, window(got, j), window(want, j), j)
		}
	}
}

// TestInvalidUTF8 documents the behaviour on invalid UTF-8: each invalid byte is one character of
// the "other" class (like punctuation), so invalid bytes between letters or digits form their own
// pre-token, which the BPE model encodes from its byte-level characters; the round trip is exact.
// Expected ids: HF on the valid parts, HF's BPE model on the byte-level form of the invalid bytes.
func TestInvalidUTF8(t *testing.T) {
	tok := gptj(t)
	enc, _, _ := byteLevel()
	cases := []struct{ name, pre, bad, post string }{
		{"lone continuation", "abc", "\x80", "def"},
		{"truncated sequence", "héllo", "\xe4\xbd", "x"},
		{"ff fe bytes", "1", "\xff\xfe", "2"},
		{"surrogate encoding", "a", "\xed\xa0\x80", "b"},
	}
	var texts, middles []string
	for _, c := range cases {
		texts = append(texts, c.pre, c.post)
		var sb strings.Builder
		for j := 0; j < len(c.bad); j++ {
			sb.WriteString(enc[c.bad[j]])
		}
		middles = append(middles, sb.String())
	}
	var want, mid [][]int
	hf(t, "encode", fixtureJSON(), texts, &want)
	hf(t, "model", fixtureJSON(), middles, &mid)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.pre + c.bad + c.post
			got := tok.Encode(in)
			exp := append(append(append([]int(nil), want[2*i]...), mid[i]...), want[2*i+1]...)
			if j := firstDiff(got, exp); j >= 0 {
				t.Errorf("Encode(%q) = %v, want HF(%q) + HF-BPE(%q) + HF(%q) = %v", in, got, c.pre, middles[i], c.post, exp)
			}
			if back, err := tok.Decode(got); err != nil || back != in {
				t.Errorf("Decode(Encode(%q)) = %q, %v", in, back, err)
			}
		})
	}
}

// TestErrors checks that bad input gives errors that name the file, line or id.
func TestErrors(t *testing.T) {
	tok := gptj(t)
	for _, id := range []int{-1, tok.VocabSize(), 1 << 30} {
		if _, err := tok.Decode([]int{31373, id}); err == nil || !strings.Contains(err.Error(), "id ") {
			t.Errorf("Decode with id %d: error %v, want one naming the id", id, err)
		}
	}
	empty := t.TempDir()
	if _, err := Load(empty); err == nil || !strings.Contains(err.Error(), "vocab.json") {
		t.Errorf("Load(empty dir): %v, want an error naming vocab.json", err)
	}
	badJSON := t.TempDir()
	_ = os.WriteFile(filepath.Join(badJSON, "tokenizer.json"), []byte("{not json"), 0o644)
	if _, err := Load(badJSON); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Load(bad tokenizer.json): %v, want an error naming the file", err)
	}
	badMerge := t.TempDir()
	vocab, _ := os.ReadFile(filepath.Join(fixtureDir(), "vocab.json"))
	_ = os.WriteFile(filepath.Join(badMerge, "vocab.json"), vocab, 0o644)
	_ = os.WriteFile(filepath.Join(badMerge, "merges.txt"), []byte("#version: 0.2\nĠ t\nzzq_not qq_tokens\n"), 0o644)
	if _, err := Load(badMerge); err == nil || !strings.Contains(err.Error(), "merges.txt:3") {
		t.Errorf("Load(bad merges.txt): %v, want an error naming merges.txt:3", err)
	}
	if s := tok.TokenString(-5); !strings.Contains(s, "-5") {
		t.Errorf("TokenString(-5) = %q", s)
	}
}

// TestMergeHeapMatchesSimple checks that the heap merge used for long words gives the same ids as
// the quadratic loop on every word of 500 corpus documents and on long synthetic words.
func TestMergeHeapMatchesSimple(t *testing.T) {
	tok := gptj(t)
	words := map[string]bool{}
	for _, doc := range corpus(t)[:500] {
		preTokenize(doc, func(w string) {
			if len(w) <= simpleMax {
				words[w] = true
			}
		})
	}
	for _, w := range []string{strings.Repeat("a", 47), strings.Repeat("ab", 24), "Ġ" + strings.Repeat("the", 15)} {
		words[w[:min(len(w), simpleMax)]] = true
	}
	for w := range words {
		s, h := tok.model.mergeSimple(w), tok.model.mergeHeap(w)
		if len(s) != len(h) {
			t.Fatalf("word %q: simple %v, heap %v", w, s, h)
		}
		for i := range s {
			if s[i] != h[i] {
				t.Fatalf("word %q: simple %v, heap %v", w, s, h)
			}
		}
	}
	t.Logf("%d words compared", len(words))
}

// TestConcurrentEncode encodes the same documents from several goroutines and compares with a
// sequential pass (run with -race to check the cache's locking).
func TestConcurrentEncode(t *testing.T) {
	tok, err := Load(fixtureDir()) // fresh cache
	if err != nil {
		t.Fatal(err)
	}
	docs := corpus(t)[:400]
	ref := gptj(t)
	want := make([][]int, len(docs))
	for i, d := range docs {
		want[i] = ref.Encode(d)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := range docs {
				i := (k*7 + g*53) % len(docs)
				if firstDiff(tok.Encode(docs[i]), want[i]) >= 0 {
					errs <- docs[i][:min(40, len(docs[i]))]
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Encode differs on doc starting %q", e)
	}
}

// TestAddedTokenOrder: HF tokenizers ignores the "id" of tokenizer.json's added tokens and
// assigns ids in list order (as sugarme's loader does); a file whose ids disagree with that order
// (here: the list reversed) is refused by Load with an error naming the token and both ids.
func TestAddedTokenOrder(t *testing.T) {
	dir := writeVariant(t, func(m map[string]any) {
		l := m["added_tokens"].([]any)
		for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
			l[i], l[j] = l[j], l[i]
		}
	})
	path := filepath.Join(dir, "tokenizer.json")
	raw := testutil.RunPython(t, filepath.Join("testdata", "hf_encode.py"), "info", path)
	var info struct {
		TokenToID map[string]int `json:"token_to_id"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("info output %q: %v", raw, err)
	}
	stock, err := sgpretrained.FromFile(path)
	if err != nil {
		t.Fatalf("sugarme FromFile(%s): %v", path, err)
	}
	name := "<|extratoken_143|>"
	stockID, _ := stock.TokenToId(name)
	t.Logf("reversed added_tokens: %s has id 50399 in the file; HF assigns %d, sugarme %d", name, info.TokenToID[name], stockID)
	_, err = Load(dir)
	t.Logf("Load: %v", err)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), fmt.Sprint(info.TokenToID[name])) {
		t.Errorf("Load(reversed added_tokens) = %v, want an error naming %s and HF's id %d", err, name, info.TokenToID[name])
	}
}

// TestSugarmeStockDropsAddedTokens shows that sugarme's stock pipeline drops an added token
// written in the text, where HF (and ours) encodes it as its id.
func TestSugarmeStockDropsAddedTokens(t *testing.T) {
	text := "x <|extratoken_7|>"
	var want [][]int
	hf(t, "encode", fixtureJSON(), []string{text}, &want)
	stock, err := sgpretrained.FromFile(fixtureJSON())
	if err != nil {
		t.Fatalf("sugarme FromFile: %v", err)
	}
	en, err := stock.EncodeSingle(text, false)
	if err != nil {
		t.Fatalf("sugarme EncodeSingle(%q): %v", text, err)
	}
	got := gptj(t).Encode(text)
	t.Logf("%q: HF %v, sugarme %v, ours %v", text, want[0], en.Ids, got)
	if firstDiff(got, want[0]) >= 0 {
		t.Errorf("ours Encode(%q) = %v, HF %v", text, got, want[0])
	}
	if firstDiff(en.Ids, want[0]) < 0 {
		t.Errorf("sugarme now agrees with HF on %q (%v): the divergence this package works around is gone", text, en.Ids)
	}
}
