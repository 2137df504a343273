package tokenizer

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// familyVariant writes a copy of a trained family's tokenizer.json (and tokenizer_config.json)
// after edit changes its JSON, and returns the directory.
func familyVariant(t *testing.T, kind string, edit func(m map[string]any)) string {
	t.Helper()
	src := familyDir(t, kind)
	raw, err := os.ReadFile(filepath.Join(src, "tokenizer.json"))
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
	if cfg, err := os.ReadFile(filepath.Join(src, "tokenizer_config.json")); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644)
	}
	return dir
}

// jsonOf parses a JSON literal (for the edits).
func jsonOf(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		panic(s + ": " + err.Error())
	}
	return v
}

func model(m map[string]any) map[string]any { return m["model"].(map[string]any) }

// addTokens appends added tokens with the ids HF assigns them: a vocab token's id, else the
// next id after the largest.
func addTokens(m map[string]any, toks ...string) {
	next := 0
	vocab := model(m)["vocab"].(map[string]any)
	for _, id := range vocab {
		next = max(next, int(id.(float64))+1)
	}
	list, _ := m["added_tokens"].([]any)
	for _, a := range list {
		next = max(next, int(a.(map[string]any)["id"].(float64))+1)
	}
	for _, s := range toks {
		a := jsonOf(s).(map[string]any)
		if id, ok := vocab[a["content"].(string)]; ok {
			a["id"] = id
		} else {
			a["id"] = float64(next)
			next++
		}
		list = append(list, a)
	}
	m["added_tokens"] = list
}

// renameByte replaces the vocab entry of byte b's byte-level character with an unreachable
// token (same id) and drops the merges that use it: the vocabulary no longer covers byte b.
func renameByte(m map[string]any, b byte) {
	enc, _, _ := byteLevel()
	ch := enc[b]
	v := model(m)["vocab"].(map[string]any)
	v["<unused0>"] = v[ch]
	delete(v, ch)
	var keep []any
	for _, mg := range model(m)["merges"].([]any) {
		p := mg.([]any)
		if p[0] != ch && p[1] != ch {
			keep = append(keep, mg)
		}
	}
	model(m)["merges"] = keep
}

// variantTexts are the texts the variants compare on.
func variantTexts(t testing.TB) []string {
	texts := append([]string(nil), adversarial...)
	texts = append(texts, "a [MASK] b", "a   [MASK]   b", "x<sep>  y", " <sep>\n\nz", "[MASK][MASK] [MASK]",
		"cat concatenate cat. (cat) cats _cat_ 1cat caté cat\u0301", "dog hotdog  dog dog", "singing ring ing",
		"ﬁx fix ﬁ", "1½ ² ٣٤ 12345 x1y22z333", "Hello World HELLO", "ab abab", "a\x00b\x00\x00c")
	return append(texts, corpus(t)[:150]...)
}

// TestComponentVariants edits the trained families' tokenizer.json to use the components and
// options the families themselves do not (other normalizers, Digits, Split behaviours and
// patterns, Metaspace schemes, unknown tokens without byte fallback, missing bytes, added tokens
// with lstrip/rstrip/single_word/normalized, other decoders and templates) and requires HF's
// ids, special-token ids and decode on each.
func TestComponentVariants(t *testing.T) {
	variants := []struct {
		name, kind string
		edit       func(m map[string]any)
	}{
		{"NFKC", "gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "NFKC"}`) }},
		{"NFD", "gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "NFD"}`) }},
		{"NFKD", "gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "NFKD"}`) }},
		{"Lowercase", "gpt2", func(m map[string]any) { m["normalizer"] = jsonOf(`{"type": "Lowercase"}`) }},
		{"Replace regex", "gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}`)
		}},
		{"Prepend and Sequence", "gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "Sequence", "normalizers": [{"type": "NFKC"},
				{"type": "Replace", "pattern": {"String": "’"}, "content": "'"}, {"type": "Lowercase"},
				{"type": "Prepend", "prepend": "> "}]}`)
		}},
		{"Digits individual", "gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
				{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}`)
		}},
		{"Digits contiguous, prefix space", "gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": false},
				{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}]}`)
		}},
		{"ByteLevel prefix space, no regex", "gpt2", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": false}`)
		}},
		{"no decoder", "gpt2", func(m map[string]any) { m["decoder"] = nil }},
		{"added token flags", "gpt2", func(m map[string]any) {
			addTokens(m,
				`{"content": "[MASK]", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true}`,
				`{"content": "<sep>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": true}`,
				`{"content": "cat", "single_word": true, "lstrip": false, "rstrip": false, "normalized": true, "special": false}`,
				`{"content": "dog", "single_word": true, "lstrip": true, "rstrip": false, "normalized": false, "special": false}`,
				`{"content": "ing", "single_word": false, "lstrip": false, "rstrip": true, "normalized": true, "special": false}`)
		}},
		{"normalized added token under NFKC", "gpt2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "NFKC"}`)
			addTokens(m, `{"content": "ﬁx", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}`,
				`{"content": "ＡＢ", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}`)
		}},
		{"missing byte dropped", "gpt2", func(m map[string]any) { renameByte(m, 0) }},
		{"missing byte unk", "gpt2", func(m map[string]any) { renameByte(m, 0); model(m)["unk_token"] = "<unused0>" }},
		{"Split MergedWithNext inverted", "llama3", func(m map[string]any) {
			sp := m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
			sp["behavior"], sp["invert"] = "MergedWithNext", true
		}},
		{"Split Contiguous", "llama3", func(m map[string]any) {
			sp := m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
			sp["behavior"] = "Contiguous"
		}},
		{"Split GPT-2 pattern", "llama3", func(m map[string]any) {
			sp := m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
			sp["pattern"] = map[string]any{"Regex": gpt2Pattern}
		}},
		{"Split generic pattern", "llama3", func(m map[string]any) {
			sp := m["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)
			sp["pattern"] = map[string]any{"Regex": `\p{L}+|\p{N}|\s+(?=\S)|\s+|[^\s\p{L}\p{N}]+`}
		}},
		{"Split String removed", "llama3", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [
				{"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": false},
				{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}`)
		}},
		{"no ignore_merges", "llama3", func(m map[string]any) { model(m)["ignore_merges"] = false }},
		{"BOS and EOS template", "llama3", func(m map[string]any) {
			m["post_processor"] = jsonOf(`{"type": "TemplateProcessing",
				"single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
					{"SpecialToken": {"id": "<|end_of_text|>", "type_id": 0}}],
				"pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
				"special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [3000], "tokens": ["<|begin_of_text|>"]},
					"<|end_of_text|>": {"id": "<|end_of_text|>", "ids": [3001], "tokens": ["<|end_of_text|>"]}}}`)
		}},
		{"unk fused, no byte fallback", "llama2", func(m map[string]any) { model(m)["byte_fallback"] = false }},
		{"unk not fused, no byte fallback", "llama2", func(m map[string]any) {
			model(m)["byte_fallback"], model(m)["fuse_unk"] = false, false
		}},
		{"no unk, no byte fallback", "llama2", func(m map[string]any) {
			model(m)["byte_fallback"], model(m)["unk_token"] = false, nil
		}},
		{"byte fallback and unk", "llama2", func(m map[string]any) { model(m)["fuse_unk"] = false }},
		{"Replace regex normalizer", "llama2", func(m map[string]any) {
			m["normalizer"] = jsonOf(`{"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
				{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}`)
		}},
		{"Metaspace always split", "llama2", func(m map[string]any) {
			m["normalizer"] = nil
			m["pre_tokenizer"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`)
			m["decoder"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`)
		}},
		{"Metaspace never", "llama2", func(m map[string]any) {
			m["normalizer"] = nil
			m["pre_tokenizer"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}`)
			m["decoder"] = jsonOf(`{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
				{"type": "ByteFallback"}, {"type": "Fuse"}]}`)
		}},
		{"Metaspace legacy add_prefix_space", "llama2", func(m map[string]any) {
			m["normalizer"] = nil
			m["pre_tokenizer"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true, "str_rep": "▁"}`)
			m["decoder"] = jsonOf(`{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true, "str_rep": "▁"}`)
		}},
		{"Digits then Metaspace first", "mistral", func(m map[string]any) {
			m["pre_tokenizer"] = jsonOf(`{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
				{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}]}`)
		}},
		{"Mistral v0.1 decoder", "mistral", func(m map[string]any) {
			m["decoder"] = jsonOf(`{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
				{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}`)
		}},
		{"Strip two", "mistral", func(m map[string]any) {
			// (a Strip with stop > 0 makes HF panic on a token it strips entirely)
			m["decoder"] = jsonOf(`{"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"},
				{"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}`)
		}},
		{"added tokens in SentencePiece", "llama2", func(m map[string]any) {
			addTokens(m,
				`{"content": "<mask>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true}`,
				`{"content": "dog", "single_word": true, "lstrip": false, "rstrip": false, "normalized": true, "special": false}`,
				`{"content": "▁cat", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}`)
		}},
	}
	for _, kind := range []string{"llama3", "llama2"} {
		variants = append(variants, struct {
			name, kind string
			edit       func(m map[string]any)
		}{"merges as strings " + kind, kind, func(m map[string]any) {
			var legacy []any
			for _, mg := range model(m)["merges"].([]any) {
				p := mg.([]any)
				legacy = append(legacy, p[0].(string)+" "+p[1].(string))
			}
			model(m)["merges"] = legacy
		}})
	}
	texts := variantTexts(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := familyVariant(t, v.kind, v.edit)
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			refs := hfRefs(t, filepath.Join(dir, "tokenizer.json"), texts)
			if bad, _ := checkParity(t, tok, texts, refs, 0); bad > 0 {
				t.Errorf("%d of %d texts differ from HF tokenizers", bad, len(texts))
			}
		})
	}
}

// TestFamiliesDecodeFragments decodes token sequences that cut characters and words apart —
// single tokens, every prefix of the ids of multi-byte texts, reversed sequences, the first
// tokens of the vocabulary (bytes, byte-fallback tokens, specials) and random sequences — and
// requires DecodeText to give HF's decode(ids, skip_special_tokens=False).
func TestFamiliesDecodeFragments(t *testing.T) {
	for _, kind := range families {
		t.Run(kind, func(t *testing.T) {
			dir := familyDir(t, kind)
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var seqs [][]int
			for _, text := range []string{"héllo wörld", "日本語のテキスト", "emoji 🙂🚀 and ½", "Привет, мир", " ▁x  y ", "<s> a</s>"} {
				ids := tok.Encode(text)
				for i := range ids {
					seqs = append(seqs, []int{ids[i]}, ids[:i+1])
				}
				rev := make([]int, len(ids))
				for i, id := range ids {
					rev[len(ids)-1-i] = id
				}
				seqs = append(seqs, rev)
			}
			for id := 0; id < min(tok.VocabSize(), 400); id++ {
				seqs = append(seqs, []int{id}, []int{id, id})
			}
			for id := trainVocab; id < tok.VocabSize(); id++ { // the added tokens
				seqs = append(seqs, []int{id}, []int{id, 5, id})
			}
			rng := rand.New(rand.NewSource(1))
			for i := 0; i < 300; i++ {
				s := make([]int, 1+rng.Intn(8))
				for j := range s {
					s[j] = rng.Intn(tok.VocabSize())
				}
				seqs = append(seqs, s)
			}
			seqs = append(seqs, []int{})
			want := hfDecodeWith(t, filepath.Join(dir, "tokenizer.json"), seqs)
			bad := 0
			for i, ids := range seqs {
				got, err := tok.DecodeText(ids)
				if err != nil || got != want[i] {
					if bad < 5 {
						t.Errorf("ids %v: DecodeText = %q (%v), HF %q", ids, got, err, want[i])
					}
					bad++
				}
			}
			t.Logf("%d sequences, %d differ", len(seqs), bad)
		})
	}
}

// TestFamiliesBOS: the BOS and EOS of each family are those of tokenizer_config.json, the same
// ids transformers' AutoTokenizer gives; Qwen2's config sets bos_token to null, so BOSToken is
// an error that says so. Without the config file, the BOS is the special token the
// post-processor's template puts first (Llama 3), or none (GPT-2).
func TestFamiliesBOS(t *testing.T) {
	args := []string{filepath.Join("testdata", "hf_ref.py"), "special"}
	for _, kind := range families {
		args = append(args, familyDir(t, kind))
	}
	type ids struct {
		BOS *int `json:"bos"`
		EOS *int `json:"eos"`
	}
	var wants []ids
	dec := json.NewDecoder(bytes.NewReader(testutil.RunPython(t, args[0], args[1:]...)))
	for dec.More() {
		var w ids
		if err := dec.Decode(&w); err != nil {
			t.Fatal(err)
		}
		wants = append(wants, w)
	}
	if len(wants) != len(families) {
		t.Fatalf("hf_ref.py special: %d results for %d directories", len(wants), len(families))
	}
	for k, kind := range families {
		t.Run(kind, func(t *testing.T) {
			tok, err := Load(familyDir(t, kind))
			if err != nil {
				t.Fatal(err)
			}
			want := wants[k]
			id, err := tok.BOSToken()
			switch {
			case want.BOS == nil:
				if err == nil || !strings.Contains(err.Error(), "bos_token to null") || tok.BOS() != -1 {
					t.Errorf("BOSToken() = %d, %v; transformers has no BOS, want an error saying tokenizer_config.json sets bos_token to null", id, err)
				}
				t.Logf("BOSToken: %v", err)
			case err != nil || id != *want.BOS || tok.BOS() != *want.BOS:
				t.Errorf("BOSToken() = %d, %v, BOS() = %d; transformers %d", id, err, tok.BOS(), *want.BOS)
			}
			if want.EOS != nil && tok.EOS() != *want.EOS {
				t.Errorf("EOS() = %d, transformers %d", tok.EOS(), *want.EOS)
			}
			wantAdds := kind == "llama3" || kind == "llama2" || kind == "mistral"
			if tok.AddsBOS() != wantAdds {
				t.Errorf("AddsBOS() = %v, want %v", tok.AddsBOS(), wantAdds)
			}
		})
	}
	raw, err := os.ReadFile(filepath.Join(familyDir(t, "llama3"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	l3, err := LoadJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := l3.BOSToken(); err != nil || id != trainVocab {
		t.Errorf("Llama 3 without tokenizer_config.json: BOSToken() = %d, %v, want the template's <|begin_of_text|> %d", id, err, trainVocab)
	}
	raw, _ = os.ReadFile(filepath.Join(familyDir(t, "gpt2"), "tokenizer.json"))
	g2, err := LoadJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := g2.BOSToken(); err == nil || !strings.Contains(err.Error(), "names no BOS") {
		t.Errorf("GPT-2 without tokenizer_config.json: BOSToken() = %d, %v, want an error saying it names no BOS", id, err)
	}
	// Config files that disagree, or name a token the vocabulary lacks.
	for name, files := range map[string][2]string{
		"ambiguous":      {`{"bos_token": "<s>"}`, `{"bos_token": "</s>"}`},
		"not in the voc": {`{"bos_token": "<nope>"}`, ``},
	} {
		dir := familyVariant(t, "llama2", func(map[string]any) {})
		_ = os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(files[0]), 0o644)
		if files[1] != "" {
			_ = os.WriteFile(filepath.Join(dir, "special_tokens_map.json"), []byte(files[1]), 0o644)
		}
		tok, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := tok.BOSToken(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: BOSToken() = %d, %v, want an error mentioning %q", name, id, err, name)
		}
	}
}
