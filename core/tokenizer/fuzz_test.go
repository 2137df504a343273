package tokenizer

import (
	"testing"
)

// FuzzEncodeDecode checks on arbitrary byte strings that Encode and Decode never panic, that every
// id is inside the vocabulary and that Decode(Encode(s)) == s. The seeds live in
// testdata/fuzz/FuzzEncodeDecode and run with plain `go test`; `go test -fuzz FuzzEncodeDecode`
// explores further.
func FuzzEncodeDecode(f *testing.F) {
	for _, c := range edgeCases {
		f.Add(c.input)
	}
	tok := gptj(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		for i, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q)[%d] = %d outside [0, %d)", s, i, id, tok.VocabSize())
			}
			_ = tok.TokenString(id)
		}
		back, err := tok.Decode(ids)
		if err != nil {
			t.Fatalf("Decode(Encode(%q)): %v", s, err)
		}
		if back != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, back)
		}
	})
}
