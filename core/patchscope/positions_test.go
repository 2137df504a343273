package patchscope

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// builtins are three methods shaped like the published ones (logit lens and two patch targets).
func builtins() []Method {
	return []Method{
		{Name: "logitlens", Kind: KindLogitLens},
		{Name: "patchscope", Kind: KindPatch, Target: []int{5, 6, 7, 8, 9}, Placeholder: 4, TargetMode: TargetSame},
		{Name: "simplescope", Kind: KindPatch, Target: []int{7}, Placeholder: 0, TargetMode: TargetSame},
	}
}

func lengthsOf(prompts [][]int) []int {
	out := make([]int, len(prompts))
	for i, p := range prompts {
		out[i] = len(p)
	}
	return out
}

// notebookRef is pyrandom_ref.py's notebook loop: [method][layer][prompt] positions, -1 where the
// prompt has no tokens (no draw).
func notebookRef(t *testing.T, seed int64, lengths []int, nMethods, nLayers int) [][][]int {
	t.Helper()
	ref := pyRef(t, map[string]any{"notebook": []map[string]any{{"seed": seed, "lengths": lengths, "n_methods": nMethods, "n_layers": nLayers}}})
	var out [][][][]*int
	if err := json.Unmarshal(ref["notebook"], &out); err != nil {
		t.Fatal(err)
	}
	res := make([][][]int, nMethods)
	for mi := range res {
		res[mi] = make([][]int, nLayers)
		for li := range res[mi] {
			for _, p := range out[0][mi][li] {
				v := -1
				if p != nil {
					v = *p
				}
				res[mi][li] = append(res[mi][li], v)
			}
		}
	}
	return res
}

// paperRef is pyrandom_ref.py's paper loop: one position per prompt, -1 where it is too short.
func paperRef(t *testing.T, seed int64, lengths []int, start int) []int {
	t.Helper()
	ref := pyRef(t, map[string]any{"paper": []map[string]any{{"seed": seed, "lengths": lengths, "start": start}}})
	var out [][]*int
	if err := json.Unmarshal(ref["paper"], &out); err != nil {
		t.Fatal(err)
	}
	res := make([]int, len(lengths))
	for d, p := range out[0] {
		res[d] = -1
		if p != nil {
			res[d] = *p
		}
	}
	return res
}

// TestNotebookPositionsPlanMatchesPython: the published run's shape (2 000 documents of 1 to
// 2 048 tokens, 3 methods, 28 layers: 168 000 draws) planned by the engine equals the positions
// of CPython's loop random.seed(42); for method, layer, document: randint(0, len-1).
func TestNotebookPositionsPlanMatchesPython(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	prompts := make([][]int, 2000)
	for d := range prompts {
		n := 1 + r.IntN(400)
		switch d % 97 {
		case 0:
			n = 2048 // cut to the context, BOS included
		case 1:
			n = 1 // BOS only
		}
		prompts[d] = make([]int, n)
	}
	const L = 28
	req := Request{Prompts: prompts, Methods: builtins(), Positions: Positions{Mode: PosNotebook}, Seed: 42}
	for l := 0; l < L; l++ {
		req.Layers = append(req.Layers, l)
	}
	req.planPositions()
	want := notebookRef(t, 42, lengthsOf(prompts), 3, L)
	for mi := range req.Methods {
		for li, l := range req.Layers {
			for d := range prompts {
				if got := req.positionOf(d, li, mi, l); got != want[mi][li][d] {
					t.Fatalf("method %d layer %d document %d (len %d): position %d, CPython %d", mi, l, d, len(prompts[d]), got, want[mi][li][d])
				}
			}
		}
	}
}

// TestNotebookPositionsEvaluate: Evaluate in notebook mode records CPython's positions, with the
// methods and layers in request order, a BOS-only prompt taking its draw (randint(0, 0)) and a
// prompt of no tokens taking none.
func TestNotebookPositionsEvaluate(t *testing.T) {
	m := tinyModel(t)
	r := rand.New(rand.NewPCG(9, 10))
	bos := vocab - 1
	var prompts [][]int
	for _, n := range []int{5, 1, 12, 0, 3, 9, 1} {
		p := []int{}
		if n > 0 {
			p = append([]int{bos}, randomTokens(r, n-1)...)
		}
		prompts = append(prompts, p)
	}
	methods := builtins()
	for _, c := range []struct {
		layers []int
		order  []int // methods, in request order
		seed   int64
	}{{[]int{0, 1, 2, 3}, []int{0, 1, 2}, 42}, {[]int{3, 1}, []int{2, 0}, -7}} {
		t.Run(fmt.Sprintf("layers %v methods %v seed %d", c.layers, c.order, c.seed), func(t *testing.T) {
			var ms []Method
			for _, i := range c.order {
				ms = append(ms, methods[i])
			}
			res, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Layers: c.layers, Methods: ms,
				Positions: Positions{Mode: PosNotebook}, Seed: c.seed, ChunkPrompts: 3, BatchTokens: 16})
			if err != nil {
				t.Fatal(err)
			}
			want := notebookRef(t, c.seed, lengthsOf(prompts), len(ms), len(c.layers))
			nl := len(c.layers)
			for mi, mr := range res.Methods {
				for d := range prompts {
					for li := range c.layers {
						if got := int(mr.Position[d*nl+li]); got != want[mi][li][d] {
							t.Fatalf("%s prompt %d layer %d: position %d, CPython %d", mr.Name, d, c.layers[li], got, want[mi][li][d])
						}
					}
				}
			}
			if !slices.Equal(res.SkippedEmpty, []int{3}) {
				t.Fatalf("SkippedEmpty %v, want [3]", res.SkippedEmpty)
			}
		})
	}
}

// TestRandomPositionsKeyedByIdentity: a random position depends on (seed, method name, layer,
// the prompt's tokens) only: dropping, reordering or duplicating prompts, methods and layers, or
// chunking differently, leaves every other position as it was.
func TestRandomPositionsKeyedByIdentity(t *testing.T) {
	m := tinyModel(t)
	r := rand.New(rand.NewPCG(11, 12))
	var prompts [][]int
	for _, n := range []int{6, 14, 3, 9, 11, 2, 8} {
		prompts = append(prompts, randomTokens(r, n))
	}
	type key struct {
		method string
		layer  int
		doc    string
	}
	positions := func(req Request) map[key]int64 {
		req.Positions, req.Seed = Positions{Mode: PosRandom}, 42
		res, err := Evaluate(context.Background(), m, req)
		if err != nil {
			t.Fatal(err)
		}
		out := map[key]int64{}
		for _, mr := range res.Methods {
			for d, p := range req.Prompts {
				for li, l := range res.Layers {
					out[key{mr.Name, l, fmt.Sprint(p)}] = mr.Position[d*len(res.Layers)+li]
				}
			}
		}
		return out
	}
	all := positions(Request{Prompts: prompts, Methods: builtins()})
	ms := builtins()
	subsets := map[string]Request{
		"methods subset, reordered":    {Prompts: prompts, Methods: []Method{ms[2], ms[0]}},
		"layers subset, reordered":     {Prompts: prompts, Methods: ms, Layers: []int{3, 0}},
		"prompts subset, reversed":     {Prompts: [][]int{prompts[5], prompts[2], prompts[0]}, Methods: ms},
		"a prompt twice, chunks of 2":  {Prompts: append([][]int{prompts[4]}, prompts...), Methods: ms[1:], ChunkPrompts: 2},
		"one prompt, one method/layer": {Prompts: [][]int{prompts[3]}, Methods: ms[1:2], Layers: []int{2}},
	}
	for name, req := range subsets {
		t.Run(name, func(t *testing.T) {
			got := positions(req)
			for k, p := range got {
				if want, ok := all[k]; !ok || want != p {
					t.Fatalf("%+v: position %d, in the full request %d (present %v)", k, p, want, ok)
				}
			}
		})
	}
	// the draws still vary with each part of the key
	varies := map[string]bool{}
	for k, p := range all {
		for k2, p2 := range all {
			if p != p2 {
				switch {
				case k.method != k2.method && k.layer == k2.layer && k.doc == k2.doc:
					varies["method"] = true
				case k.method == k2.method && k.layer != k2.layer && k.doc == k2.doc:
					varies["layer"] = true
				}
			}
		}
	}
	if !varies["method"] || !varies["layer"] {
		t.Fatalf("positions do not vary with method and layer: %v", varies)
	}
}

// TestPaperPositions: one randint(start, len-2) per prompt from CPython's random.seed(seed),
// shared by every layer and method; prompts shorter than start+2 (and empty ones) are skipped,
// listed, NaN, and take no draw.
func TestPaperPositions(t *testing.T) {
	m := tinyModel(t)
	r := rand.New(rand.NewPCG(13, 14))
	bos := vocab - 1
	for _, start := range []int{0, 1} {
		t.Run(fmt.Sprintf("start %d", start), func(t *testing.T) {
			var prompts [][]int
			for _, n := range []int{7, 2, 1, 0, 13, 3, 5} {
				p := randomTokens(r, n)
				if start == 1 && n > 0 {
					p[0] = bos
				}
				prompts = append(prompts, p)
			}
			res, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Methods: builtins(), Positions: Positions{Mode: PosPaper, Start: start}, Seed: 42})
			if err != nil {
				t.Fatal(err)
			}
			lengths := lengthsOf(prompts)
			// the reference skips what is too short and never sees the empty prompt
			var short []int
			for d, n := range lengths {
				if n > 0 && n-2 < start {
					short = append(short, d)
				}
			}
			want := paperRef(t, 42, lengths, start)
			if !slices.Equal(res.SkippedEmpty, []int{3}) || !slices.Equal(res.SkippedShort, short) {
				t.Fatalf("skipped empty %v short %v, want [3] and %v", res.SkippedEmpty, res.SkippedShort, short)
			}
			L := len(res.Layers)
			for _, mr := range res.Methods {
				for d := range prompts {
					for li := 0; li < L; li++ {
						got, i := int(mr.Position[d*L+li]), d*L+li
						if got != want[d] {
							t.Fatalf("%s prompt %d layer %d: position %d, CPython %d", mr.Name, d, li, got, want[d])
						}
						if skipped := want[d] < 0; skipped != math.IsNaN(float64(mr.Prec1[i])) {
							t.Fatalf("%s prompt %d layer %d: prec1 %v (skipped %v)", mr.Name, d, li, mr.Prec1[i], skipped)
						}
					}
				}
			}
		})
	}
}

// TestSkippedPromptsLeaveOthersBitEqual: a prompt of no tokens never aborts a run; it is listed,
// its rows are NaN (ids and positions -1), and every other prompt's values are bit-for-bit those
// of the same request without it, in every position mode. A BOS-only prompt is evaluated.
func TestSkippedPromptsLeaveOthersBitEqual(t *testing.T) {
	m := tinyModel(t)
	r := rand.New(rand.NewPCG(15, 16))
	bos := vocab - 1
	var prompts [][]int
	for _, n := range []int{6, 1, 10, 4} { // prompt 1: BOS only
		prompts = append(prompts, append([]int{bos}, randomTokens(r, n-1)...))
	}
	at := []int{0, 2, 5} // where the empty prompts go in the longer list
	with := append([][]int{}, prompts...)
	for _, i := range at {
		with = slices.Insert(with, i, []int{})
	}
	keptIdx := []int{1, 3, 4, 6} // with[keptIdx[i]] = prompts[i]
	methods := append(builtins(), Method{Name: "grid", Kind: KindPatch, Target: []int{7, 8}, Placeholder: 1, TargetMode: TargetAll})
	givenWith := make([]int, len(with))
	givenWithout := make([]int, len(prompts))
	for i, d := range keptIdx {
		givenWithout[i] = len(prompts[i]) - 1
		givenWith[d] = givenWithout[i]
	}
	for _, mode := range []Positions{{Mode: PosRandom}, {Mode: PosNotebook}, {Mode: PosLast}, {Mode: PosGiven}} {
		t.Run(mode.Mode, func(t *testing.T) {
			pw, pwo := mode, mode
			if mode.Mode == PosGiven {
				pw.PerPrompt, pwo.PerPrompt = givenWith, givenWithout
			}
			a, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Methods: methods, Positions: pwo, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			b, err := Evaluate(context.Background(), m, Request{Prompts: with, Methods: methods, Positions: pw, Seed: 5})
			if err != nil {
				t.Fatalf("with empty prompts: %v", err)
			}
			if !slices.Equal(b.SkippedEmpty, at) || len(b.SkippedShort) != 0 || b.NPrompts != len(with) {
				t.Fatalf("skipped %v / %v of %d, want %v", b.SkippedEmpty, b.SkippedShort, b.NPrompts, at)
			}
			L := len(a.Layers)
			for mi := range methods {
				ma, mb := a.Methods[mi], b.Methods[mi]
				nt := max(1, len(ma.TargetLayers))
				row := L * nt
				for i := range prompts {
					d := keptIdx[i]
					for k := 0; k < row; k++ {
						ia, ib := i*row+k, d*row+k
						for _, f := range [][2]float32{{ma.Prec1[ia], mb.Prec1[ib]}, {ma.Surprisal[ia], mb.Surprisal[ib]}, {ma.PaperSurprisal[ia], mb.PaperSurprisal[ib]}} {
							if math.Float32bits(f[0]) != math.Float32bits(f[1]) {
								t.Fatalf("%s prompt %d (%d with empties) cell %d: %v without, %v with", ma.Name, i, d, k, f[0], f[1])
							}
						}
						if ma.PatchedTop1[ia] != mb.PatchedTop1[ib] {
							t.Fatalf("%s prompt %d: patched top-1 differs", ma.Name, i)
						}
						if math.IsNaN(float64(ma.Prec1[ia])) {
							t.Fatalf("%s prompt %d (len %d) cell %d: not evaluated", ma.Name, i, len(prompts[i]), k)
						}
					}
					for li := 0; li < L; li++ {
						if ma.Position[i*L+li] != mb.Position[d*L+li] || ma.SourceTop1[i*L+li] != mb.SourceTop1[d*L+li] {
							t.Fatalf("%s prompt %d layer %d: position / source top-1 differ", ma.Name, i, li)
						}
					}
				}
				for _, d := range at {
					for k := 0; k < row; k++ {
						if !math.IsNaN(float64(mb.Prec1[d*row+k])) || !math.IsNaN(float64(mb.Surprisal[d*row+k])) || mb.PatchedTop1[d*row+k] != -1 {
							t.Fatalf("%s empty prompt %d cell %d: prec1 %v surprisal %v patched %d", mb.Name, d, k, mb.Prec1[d*row+k], mb.Surprisal[d*row+k], mb.PatchedTop1[d*row+k])
						}
					}
					for li := 0; li < L; li++ {
						if mb.Position[d*L+li] != -1 || mb.SourceTop1[d*L+li] != -1 {
							t.Fatalf("%s empty prompt %d: position %d source top-1 %d, want -1", mb.Name, d, mb.Position[d*L+li], mb.SourceTop1[d*L+li])
						}
					}
				}
			}
		})
	}
	t.Run("every prompt empty", func(t *testing.T) {
		res, err := Evaluate(context.Background(), m, Request{Prompts: [][]int{{}, {}}, Methods: methods, Positions: Positions{Mode: PosNotebook}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.SkippedEmpty, []int{0, 1}) || res.NPrompts != 2 || len(res.Methods) != len(methods) {
			t.Fatalf("skipped %v of %d, %d methods", res.SkippedEmpty, res.NPrompts, len(res.Methods))
		}
		for _, mr := range res.Methods {
			for _, v := range mr.Prec1 {
				if !math.IsNaN(float64(v)) {
					t.Fatalf("%s: prec1 %v for an empty prompt", mr.Name, v)
				}
			}
		}
	})
}
