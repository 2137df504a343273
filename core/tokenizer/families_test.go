package tokenizer

import (
	"path/filepath"
	"testing"
)

// familyTexts are the texts the family tests compare on: every corpus document and the
// adversarial strings.
func familyTexts(t testing.TB) []string {
	return append(append([]string(nil), corpus(t)...), adversarial...)
}

// checkParity compares tok with HF's refs on texts: ids (encode without special tokens), ids with
// the post-processor's special tokens (EncodeSpecial, on the texts from specialFrom on and the
// first 300), and DecodeText of HF's ids. It reports the first few differences and returns the
// number of texts that differ and the ids of every text.
func checkParity(t *testing.T, tok *Tokenizer, texts []string, refs []hfRef, specialFrom int) (int, [][]int) {
	t.Helper()
	bad, total := 0, 0
	all := make([][]int, len(texts))
	for i, s := range texts {
		got := tok.Encode(s)
		all[i] = got
		total += len(got)
		differs := false
		if j := firstDiff(got, refs[i].IDs); j >= 0 {
			differs = true
			if bad < 5 {
				t.Errorf("text %d %.60q: ids differ at %d of %d/%d: got %v, HF %v", i, s, j, len(got), len(refs[i].IDs),
					window(got, j), window(refs[i].IDs, j))
			}
		}
		if i < 300 || i >= specialFrom {
			if sp := tok.EncodeSpecial(s); firstDiff(sp, refs[i].Special) >= 0 {
				differs = true
				if bad < 5 {
					t.Errorf("text %d %.60q: EncodeSpecial %v, HF encode(add_special_tokens=True) %v", i, s,
						window(sp, firstDiff(sp, refs[i].Special)), window(refs[i].Special, firstDiff(sp, refs[i].Special)))
				}
			}
		}
		if dt, err := tok.DecodeText(refs[i].IDs); err != nil || dt != *refs[i].Text {
			differs = true
			if bad < 5 {
				t.Errorf("text %d %.60q: DecodeText = %.80q (%v), HF decode %.80q", i, s, dt, err, *refs[i].Text)
			}
		}
		if differs {
			bad++
		}
	}
	t.Logf("%d texts, %d tokens, %d differ from HF", len(texts), total, bad)
	return bad, all
}

// TestFamiliesParity trains a small tokenizer of each family with HF tokenizers (trainDocs
// corpus documents, vocab trainVocab) and requires, on every corpus document and on the
// adversarial strings, the same ids as HF without and with special tokens and the same decoded
// text. For the families whose pipeline is lossless (no normalizer, byte-level), it also checks
// Decode(Encode(s)) == s.
func TestFamiliesParity(t *testing.T) {
	texts := familyTexts(t)
	for _, kind := range families {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := familyDir(t, kind)
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			refs := hfRefs(t, filepath.Join(dir, "tokenizer.json"), texts)
			bad, ids := checkParity(t, tok, texts, refs, len(texts)-len(adversarial))
			if bad > 0 {
				t.Errorf("%s: %d of %d texts differ from HF tokenizers", kind, bad, len(texts))
			}
			if kind == "gpt2" || kind == "llama3" {
				for i, s := range texts {
					if back, err := tok.Decode(ids[i]); err != nil || back != s {
						t.Errorf("text %d: Decode(Encode(%.40q)) = %.40q, %v", i, s, back, err)
						break
					}
				}
			}
		})
	}
}
