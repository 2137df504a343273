package patchscope

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/internal/testutil"
)

const vocab = 211

var (
	modelOnce sync.Once
	modelDir  string
	modelErr  error
)

// tinyModel is a random GPT-J (n_embd 40, 4 blocks, rotary_dim 4 < head_dim 8) made by HF.
func tinyModel(t *testing.T) *gptj.Model {
	t.Helper()
	modelOnce.Do(func() {
		var dir string
		dir, modelErr = os.MkdirTemp("", "patchscope-model-")
		if modelErr != nil {
			return
		}
		script := filepath.Join(testutil.RepoRoot(), "core", "gptj", "testdata", "hf_gptj.py")
		testutil.RunPython(t, script, dir, fmt.Sprintf("m:40:4:5:4:%d:st:21", vocab))
		modelDir = filepath.Join(dir, "m", "model")
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	m, err := gptj.Load(modelDir, torch.Float32, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if modelDir != "" {
		os.RemoveAll(filepath.Dir(filepath.Dir(modelDir)))
	}
	os.Exit(code)
}

func randomTokens(r *rand.Rand, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = r.IntN(vocab - 1) // vocab-1 is the BOS id
	}
	return out
}

// refMethod is a method as reference.py reads it.
type refMethod struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Target      []int  `json:"target,omitempty"`
	Placeholder int    `json:"placeholder"`
	TargetLayer any    `json:"target_layer,omitempty"`
}

type refOut map[string]map[string]json.RawMessage

func runReference(t *testing.T, prompts [][]int, layers []int, methods []Method, pos map[string][][]int) refOut {
	t.Helper()
	var rms []refMethod
	for _, m := range methods {
		rm := refMethod{Name: m.Name, Kind: m.Kind, Target: m.Target, Placeholder: m.Placeholder}
		if m.Kind == KindPatch {
			switch m.TargetMode {
			case TargetFixed:
				rm.TargetLayer = m.TargetLayer
			default:
				rm.TargetLayer = m.TargetMode
			}
		}
		rms = append(rms, rm)
	}
	in := map[string]any{"model": modelDir, "prompts": prompts, "layers": layers, "methods": rms, "positions": pos}
	dir := t.TempDir()
	b, _ := json.Marshal(in)
	inPath, outPath := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json")
	if err := os.WriteFile(inPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.RunPython(t, filepath.Join(testutil.RepoRoot(), "core", "patchscope", "testdata", "reference.py"), inPath, outPath)
	ob, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	var out refOut
	if err := json.Unmarshal(ob, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// flat flattens a JSON nested list of numbers.
func flat(t *testing.T, raw json.RawMessage) []float64 {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var out []float64
	var walk func(any)
	walk = func(x any) {
		switch y := x.(type) {
		case []any:
			for _, e := range y {
				walk(e)
			}
		case float64:
			out = append(out, y)
		}
	}
	walk(v)
	return out
}

func TestEngineMatchesBruteForceHF(t *testing.T) {
	m := tinyModel(t)
	r := rand.New(rand.NewPCG(1, 2))
	L := m.Cfg.NLayer
	bos := vocab - 1
	for _, withBOS := range []bool{false, true} {
		t.Run(fmt.Sprintf("bos=%v", withBOS), func(t *testing.T) {
			var prompts [][]int
			for _, n := range []int{3, 7, 12, 5, 9} {
				p := randomTokens(r, n)
				if withBOS {
					p = append([]int{bos}, p...)
				}
				prompts = append(prompts, p)
			}
			target := func(n int) []int {
				tg := randomTokens(r, n)
				if withBOS {
					tg = append([]int{bos}, tg...)
				}
				return tg
			}
			long := target(9)
			methods := []Method{
				{Name: "logitlens", Kind: KindLogitLens},
				{Name: "simplescope", Kind: KindPatch, Target: target(1), Placeholder: len(target(1)) - 1, TargetMode: TargetSame},
				{Name: "patchscope", Kind: KindPatch, Target: long, Placeholder: len(long) - 1, TargetMode: TargetSame},
				{Name: "mid-placeholder-fixed", Kind: KindPatch, Target: long, Placeholder: 4, TargetMode: TargetFixed, TargetLayer: 1},
				{Name: "last", Kind: KindPatch, Target: long, Placeholder: 6, TargetMode: TargetLast},
				{Name: "grid", Kind: KindPatch, Target: target(3), Placeholder: 2, TargetMode: TargetAll},
			}
			methods[1].Placeholder = len(methods[1].Target) - 1
			layers := []int{0, 2, L - 1}
			pos := map[string][][]int{}
			for _, meth := range methods {
				rows := make([][]int, len(prompts))
				for d, p := range prompts {
					for range layers {
						rows[d] = append(rows[d], r.IntN(len(p)))
					}
				}
				pos[meth.Name] = rows
			}
			want := runReference(t, prompts, layers, methods, pos)
			// The engine takes one position array for all methods; run one request per method
			// (and a second with small batches) and compare each with the reference.
			for _, small := range []bool{false, true} {
				for _, meth := range methods {
					req := Request{Prompts: prompts, Layers: layers, Methods: []Method{meth}, Positions: Positions{Mode: PosGiven, PerPromptLayer: pos[meth.Name]}}
					if small {
						req.BatchTokens, req.PatchRows, req.ChunkPrompts = 16, 3, 2
					}
					res, err := Evaluate(context.Background(), m, req)
					if err != nil {
						t.Fatal(err)
					}
					mr := res.Methods[0]
					ref := want[meth.Name]
					what := fmt.Sprintf("%s (small batches %v)", meth.Name, small)
					src := mr.SourceTop1
					if meth.IsGrid() { // the reference repeats the source top-1 along the target axis
						src = nil
						for _, y := range mr.SourceTop1 {
							for range mr.TargetLayers {
								src = append(src, y)
							}
						}
					}
					compareInts(t, what+" source_top1", src, flat(t, ref["source_top1"]))
					compareInts(t, what+" patched_top1", mr.PatchedTop1, flat(t, ref["patched_top1"]))
					compareFloats(t, what+" prec1", mr.Prec1, flat(t, ref["prec1"]), 0)
					compareFloats(t, what+" surprisal", mr.Surprisal, flat(t, ref["surprisal"]), 1e-4)
					compareFloats(t, what+" paper_surprisal", mr.PaperSurprisal, flat(t, ref["paper_surprisal"]), 1e-4)
				}
			}
		})
	}
}

func compareInts(t *testing.T, what string, got []int64, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference %d", what, len(got), len(want))
	}
	for i := range got {
		if float64(got[i]) != want[i] {
			t.Fatalf("%s: element %d = %d, reference %v (got %v, want %v)", what, i, got[i], want[i], got, want)
		}
	}
}

func compareFloats(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference %d", what, len(got), len(want))
	}
	worst, at := 0.0, 0
	for i := range got {
		d := math.Abs(float64(got[i]) - want[i])
		if d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if worst > tol || math.IsNaN(worst) {
		t.Fatalf("%s: max abs diff %.3g at %d (got %v, reference %v), tolerance %g", what, worst, at, got[at], want[at], tol)
	}
}

func TestInvariants(t *testing.T) {
	m := tinyModel(t)
	L := m.Cfg.NLayer
	r := rand.New(rand.NewPCG(3, 4))
	var prompts [][]int
	for _, n := range []int{4, 8, 15, 2, 1} {
		prompts = append(prompts, randomTokens(r, n))
	}
	t.Run("last layer prec1 = 1", func(t *testing.T) {
		methods := []Method{
			{Name: "logitlens", Kind: KindLogitLens},
			{Name: "simplescope", Kind: KindPatch, Target: []int{7}, Placeholder: 0, TargetMode: TargetSame},
			{Name: "patchscope", Kind: KindPatch, Target: randomTokens(r, 10), Placeholder: 9, TargetMode: TargetSame},
		}
		res, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Layers: []int{L - 1}, Methods: methods, Positions: Positions{Mode: PosRandom}, Seed: 9})
		if err != nil {
			t.Fatal(err)
		}
		for _, mr := range res.Methods {
			for i, v := range mr.Prec1 {
				if v != 1 {
					t.Fatalf("%s: prompt %d prec1 %v at the last layer (source %d, patched %d)", mr.Name, i, v, mr.SourceTop1[i], mr.PatchedTop1[i])
				}
			}
		}
	})
	t.Run("a prompt patched into itself reproduces the source", func(t *testing.T) {
		for d, p := range prompts {
			pos := r.IntN(len(p))
			self := Method{Name: "self", Kind: KindPatch, Target: p, Placeholder: pos, TargetMode: TargetSame}
			res, err := Evaluate(context.Background(), m, Request{Prompts: [][]int{p}, Methods: []Method{self}, Positions: Positions{Mode: PosGiven, PerPrompt: []int{pos}}})
			if err != nil {
				t.Fatal(err)
			}
			mr := res.Methods[0]
			for li, v := range mr.Prec1 {
				if v != 1 {
					t.Fatalf("prompt %d position %d layer %d: prec1 %v (source %d, patched %d)", d, pos, li, v, mr.SourceTop1[li], mr.PatchedTop1[li])
				}
			}
		}
	})
	t.Run("random positions are reproducible and independent of batching", func(t *testing.T) {
		methods := []Method{{Name: "logitlens", Kind: KindLogitLens}, {Name: "simplescope", Kind: KindPatch, Target: []int{7}, TargetMode: TargetSame}}
		run := func(seed int64, chunk int) *Result {
			res, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Methods: methods, Positions: Positions{Mode: PosRandom}, Seed: seed, ChunkPrompts: chunk, BatchTokens: 20})
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		a, b, c := run(42, 0), run(42, 1), run(43, 0)
		for mi := range methods {
			compareInts(t, "positions, chunked vs not", a.Methods[mi].Position, toF(b.Methods[mi].Position))
			compareFloats(t, "surprisal, chunked vs not", a.Methods[mi].Surprisal, toF32(b.Methods[mi].Surprisal), 1e-5)
		}
		same := true
		for i, p := range a.Methods[0].Position {
			if c.Methods[0].Position[i] != p {
				same = false
			}
			if p < 0 || int(p) >= len(prompts[i/L]) {
				t.Fatalf("position %d outside prompt %d of length %d", p, i/L, len(prompts[i/L]))
			}
		}
		if same {
			t.Fatal("seeds 42 and 43 drew the same positions")
		}
		differs := false
		for i := range a.Methods[0].Position {
			if a.Methods[0].Position[i] != a.Methods[1].Position[i] {
				differs = true
			}
		}
		if !differs {
			t.Fatal("two methods drew identical positions everywhere: draws are not independent per method")
		}
	})
	t.Run("no tensors leak", func(t *testing.T) {
		before := torch.LiveTensors()
		for i := 0; i < 3; i++ {
			_, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Methods: []Method{{Name: "simplescope", Kind: KindPatch, Target: []int{7}, TargetMode: TargetAll}}, Positions: Positions{Mode: PosLast}})
			if err != nil {
				t.Fatal(err)
			}
		}
		if after := torch.LiveTensors(); after != before {
			t.Fatalf("live tensors %d -> %d after three evaluations", before, after)
		}
	})
	t.Run("cancellation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Evaluate(ctx, m, Request{Prompts: prompts, Methods: []Method{{Name: "logitlens", Kind: KindLogitLens}}, Positions: Positions{Mode: PosLast}})
		if err == nil || !errorsIsCanceled(err) {
			t.Fatalf("cancelled evaluation returned %v", err)
		}
	})
}

func toF(v []int64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func toF32(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func TestValidationErrors(t *testing.T) {
	m := tinyModel(t)
	ok := Method{Name: "s", Kind: KindPatch, Target: []int{7}, TargetMode: TargetSame}
	cases := []struct {
		name string
		req  Request
		want string
	}{
		{"no prompts", Request{Methods: []Method{ok}, Positions: Positions{Mode: PosLast}}, "no prompts"},
		{"layer out of range", Request{Prompts: [][]int{{1}}, Layers: []int{9}, Methods: []Method{ok}, Positions: Positions{Mode: PosLast}}, "layer 9 out of range"},
		{"position out of range", Request{Prompts: [][]int{{1, 2}}, Methods: []Method{ok}, Positions: Positions{Mode: PosGiven, PerPrompt: []int{2}}}, "position 2 for prompt 0 out of range"},
		{"placeholder outside", Request{Prompts: [][]int{{1}}, Methods: []Method{{Name: "x", Kind: KindPatch, Target: []int{1}, Placeholder: 3, TargetMode: TargetSame}}, Positions: Positions{Mode: PosLast}}, "placeholder index 3"},
		{"unknown kind", Request{Prompts: [][]int{{1}}, Methods: []Method{{Name: "x", Kind: "lens"}}, Positions: Positions{Mode: PosLast}}, "unknown kind"},
		{"token out of vocabulary", Request{Prompts: [][]int{{vocab}}, Methods: []Method{ok}, Positions: Positions{Mode: PosLast}}, "out of range"},
		{"unknown positions", Request{Prompts: [][]int{{1}}, Methods: []Method{ok}, Positions: Positions{Mode: "first"}}, `unknown positions mode "first" (known: random, notebook, paper, last, given)`},
		{"paper start negative", Request{Prompts: [][]int{{1}}, Methods: []Method{ok}, Positions: Positions{Mode: PosPaper, Start: -1}}, "start -1 is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate(context.Background(), m, tc.req)
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
