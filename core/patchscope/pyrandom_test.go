package patchscope

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// pyRef runs testdata/pyrandom_ref.py on spec with the project's Python and decodes its answer.
func pyRef(t *testing.T, spec map[string]any) map[string]json.RawMessage {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := testutil.RunPython(t, filepath.Join("testdata", "pyrandom_ref.py"), in)
	var ref map[string]json.RawMessage
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("decode pyrandom_ref.py output: %v", err)
	}
	return ref
}

type pyProgram struct {
	Seed int64   `json:"seed"`
	Ops  [][]any `json:"ops"`
}

// run executes the program's ops on the Go generator, results as decimal strings.
func (p pyProgram) run() []string {
	g := NewPyRandom(p.Seed)
	var out []string
	for _, op := range p.Ops {
		switch op[0] {
		case "bits":
			out = append(out, strconv.FormatUint(g.GetRandBits(op[1].(int)), 10))
		case "randint":
			out = append(out, strconv.Itoa(g.RandInt(op[1].(int), op[2].(int))))
		}
	}
	return out
}

// TestPyRandomMatchesCPython: raw 32-bit outputs (past two regenerations of the state),
// getrandbits of 1 … 64 bits, and randint over ranges from one value (randint(0, 0)) to 2^40, for
// seeds including 0, negative seeds (CPython seeds with |n|), seeds of two 32-bit words and the
// int64 extremes, all compared with the venv's own `random` module.
func TestPyRandomMatchesCPython(t *testing.T) {
	seeds := []int64{42, 0, 1, -42, 7, 1 << 32, 1<<32 + 5, 123456789012, math.MaxInt64, math.MinInt64, -1}
	r := rand.New(rand.NewPCG(5, 6))
	var progs []pyProgram
	for _, s := range seeds {
		var ops [][]any
		for i := 0; i < 1400; i++ { // 1 400 > 2 × 624: the state regenerates twice
			ops = append(ops, []any{"bits", 32})
		}
		for k := 0; k <= 64; k++ {
			ops = append(ops, []any{"bits", k})
		}
		for i := 0; i < 400; i++ {
			var a, b int
			switch i % 5 {
			case 0:
				a = r.IntN(5) // randint(a, a): one value, still draws in CPython
				b = a
			case 1:
				a, b = 0, r.IntN(3000)
			case 2:
				a, b = 1, 1+r.IntN(2100)
			case 3:
				a, b = -r.IntN(100), r.IntN(1<<20)
			default:
				a, b = 0, r.IntN(1<<40)
			}
			ops = append(ops, []any{"randint", a, b})
		}
		progs = append(progs, pyProgram{Seed: s, Ops: ops})
	}
	ref := pyRef(t, map[string]any{"programs": progs})
	var want [][]string
	if err := json.Unmarshal(ref["programs"], &want); err != nil {
		t.Fatal(err)
	}
	for pi, p := range progs {
		got := p.run()
		if len(got) != len(want[pi]) {
			t.Fatalf("seed %d: %d results, CPython %d", p.Seed, len(got), len(want[pi]))
		}
		for i := range got {
			if got[i] != want[pi][i] {
				t.Fatalf("seed %d, op %d %v: Go %s, CPython %s", p.Seed, i, p.Ops[i], got[i], want[pi][i])
			}
		}
	}
	t.Logf("CPython %s", ref["python"])
}

// TestPyRandomRandIntOneValueDraws: CPython's randint(0, 0) consumes random bits (randbelow(1)
// calls getrandbits(1)), which the notebook's loop relies on for a BOS-only document. Checked
// on CPython itself (the draw after randint(0, 0) is not the fresh generator's first) and
// against Go.
func TestPyRandomRandIntOneValueDraws(t *testing.T) {
	progs := []pyProgram{
		{Seed: 42, Ops: [][]any{{"bits", 32}}},
		{Seed: 42, Ops: [][]any{{"randint", 0, 0}, {"bits", 32}}},
		{Seed: 42, Ops: [][]any{{"randint", 0, 0}, {"randint", 0, 0}, {"randint", 0, 0}, {"bits", 32}}},
	}
	ref := pyRef(t, map[string]any{"programs": progs})
	var want [][]string
	if err := json.Unmarshal(ref["programs"], &want); err != nil {
		t.Fatal(err)
	}
	if want[0][0] == want[1][1] {
		t.Fatalf("CPython %s: randint(0, 0) drew nothing; the notebook mode assumes it draws", ref["python"])
	}
	for pi, p := range progs {
		got := p.run()
		if fmt.Sprint(got) != fmt.Sprint(want[pi]) {
			t.Fatalf("program %d: Go %v, CPython %v", pi, got, want[pi])
		}
	}
}
