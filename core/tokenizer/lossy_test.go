package tokenizer

import (
	"encoding/json"

	"github.com/simplescope/simplescope/internal/testutil"
	"testing"
)

// TestDecodeTextMatchesHF: token sequences that cut characters in pieces (single tokens of
// multi-byte characters, reversed and shuffled pieces) decode to what HF tokenizers' decode
// gives for the same tokenizer.json.
func TestDecodeTextMatchesHF(t *testing.T) {
	tk := gptj(t)
	var seqs [][]int
	for _, text := range []string{"héllo wörld", "日本語のテキスト", "emoji 🙂🚀 and ½", "Привет, мир"} {
		ids := tk.Encode(text)
		seqs = append(seqs, ids)
		for _, id := range ids {
			seqs = append(seqs, []int{id})
		}
		rev := make([]int, len(ids))
		for i, id := range ids {
			rev[len(ids)-1-i] = id
		}
		seqs = append(seqs, rev)
	}
	for id := 120; id < 260; id++ { // lone bytes 0x80-0xFF and friends
		seqs = append(seqs, []int{id}, []int{id, id + 1, 220})
	}
	in, err := json.Marshal(seqs)
	if err != nil {
		t.Fatal(err)
	}
	want := hfDecode(t, in)
	for i, ids := range seqs {
		got, err := tk.DecodeText(ids)
		if err != nil {
			t.Fatal(err)
		}
		if got != want[i] {
			t.Errorf("ids %v: got %q, HF decodes %q", ids, got, want[i])
		}
	}
}

func hfDecode(t *testing.T, seqsJSON []byte) []string {
	t.Helper()
	script := `import json, sys
from tokenizers import Tokenizer
tk = Tokenizer.from_file(sys.argv[1])
seqs = json.loads(sys.argv[2])
print(json.dumps([tk.decode(s, skip_special_tokens=False) for s in seqs]))`
	out := testutil.RunPython(t, "-c", script, fixtureJSON(), string(seqsJSON))
	var texts []string
	if err := json.Unmarshal(out, &texts); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return texts
}
