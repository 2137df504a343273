package patchscope

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// affineMaps makes one map per layer: W = scale·I + noise·N(0, 1/C), b = noise·N(0, 1).
func affineMaps(t *testing.T, m *gptj.Model, seed uint64, scale, noise float64) (map[int]Affine, map[int][2][]float32) {
	t.Helper()
	C := m.Cfg.NEmbd
	r := rand.New(rand.NewPCG(seed, 1))
	maps := map[int]Affine{}
	vals := map[int][2][]float32{}
	for l := 0; l < m.Cfg.NLayer; l++ {
		w := make([]float32, C*C)
		b := make([]float32, C)
		for i := range w {
			w[i] = float32(noise * r.NormFloat64() / math.Sqrt(float64(C)))
		}
		for i := 0; i < C; i++ {
			w[i*C+i] += float32(scale)
			b[i] = float32(noise * r.NormFloat64())
		}
		W, err := torch.FromSlice(w, []int64{int64(C), int64(C)}, torch.Float32, m.Device)
		if err != nil {
			t.Fatal(err)
		}
		B, err := torch.FromSlice(b, []int64{int64(C)}, torch.Float32, m.Device)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { W.Close(); B.Close() })
		maps[l] = Affine{W: W, B: B}
		vals[l] = [2][]float32{w, b}
	}
	return maps, vals
}

// With W = I and b = 0 the affine method is the logit lens, value for value.
func TestAffineIdentityIsLogitLens(t *testing.T) {
	m := tinyModel(t)
	maps, _ := affineMaps(t, m, 1, 1, 0)
	r := rand.New(rand.NewPCG(3, 4))
	var prompts [][]int
	for i := 0; i < 9; i++ {
		prompts = append(prompts, randomTokens(r, 2+r.IntN(14)))
	}
	res, err := Evaluate(context.Background(), m, Request{Prompts: prompts,
		Methods: []Method{{Name: "logitlens", Kind: KindLogitLens}, {Name: "id", Kind: KindAffine, Affine: maps}},
		// the same positions for both methods, small batches so that groups span chunks
		Positions: Positions{Mode: PosLast}, PatchRows: 5, ChunkPrompts: 4})
	if err != nil {
		t.Fatal(err)
	}
	ll, id := res.Methods[0], res.Methods[1]
	for i := range ll.Prec1 {
		if ll.PatchedTop1[i] != id.PatchedTop1[i] || ll.Prec1[i] != id.Prec1[i] {
			t.Fatalf("item %d: identity map top-1 %d, logit lens %d", i, id.PatchedTop1[i], ll.PatchedTop1[i])
		}
		if d := math.Abs(float64(ll.Surprisal[i] - id.Surprisal[i])); d > 1e-5 {
			t.Fatalf("item %d: surprisal differs by %g", i, d)
		}
		if d := math.Abs(float64(ll.PaperSurprisal[i] - id.PaperSurprisal[i])); d > 1e-5 {
			t.Fatalf("item %d: paper_surprisal differs by %g", i, d)
		}
	}
}

// A random map: every item equals h·W_ℓ + b_ℓ decoded by one continuation of no block, computed
// here one item at a time from the model's own forward (the engine groups, batches and chunks).
func TestAffineMatchesDirect(t *testing.T) {
	m := tinyModel(t)
	maps, vals := affineMaps(t, m, 2, 0.7, 0.5)
	r := rand.New(rand.NewPCG(7, 8))
	var prompts [][]int
	for i := 0; i < 7; i++ {
		prompts = append(prompts, randomTokens(r, 1+r.IntN(12)))
	}
	layers := []int{2, 0, 3}
	res, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Layers: layers,
		Methods:   []Method{{Name: "affine", Kind: KindAffine, Affine: maps}},
		Positions: Positions{Mode: PosRandom}, Seed: 9, PatchRows: 3, ChunkPrompts: 3})
	if err != nil {
		t.Fatal(err)
	}
	mr := res.Methods[0]
	C, L := m.Cfg.NEmbd, m.Cfg.NLayer
	for d, p := range prompts {
		for li, l := range layers {
			k := d*len(layers) + li
			pos := int(mr.Position[k])
			out, err := m.Forward(context.Background(), [][]int{p}, gptj.Request{Full: true})
			if err != nil {
				t.Fatal(err)
			}
			all, err := out.Resid[l].Float32s() // (1, T, C)
			if err != nil {
				t.Fatal(err)
			}
			srcLogits, _ := out.Logits.Float32s() // (1, T, V)
			out.Close()
			h := all[pos*C : (pos+1)*C]
			w, b := vals[l][0], vals[l][1]
			y := make([]float32, C)
			for j := 0; j < C; j++ {
				acc := float64(b[j])
				for i := 0; i < C; i++ {
					acc += float64(h[i]) * float64(w[i*C+j])
				}
				y[j] = float32(acc)
			}
			ht, _ := torch.FromSlice(y, []int64{1, int64(C)}, torch.Float32, m.Device)
			logits, err := m.Continue(context.Background(), ht, L, &gptj.Prefix{})
			ht.Close()
			if err != nil {
				t.Fatal(err)
			}
			lg, _ := logits.Float32s()
			logits.Close()
			V := len(lg)
			src := srcLogits[pos*V : (pos+1)*V]
			top, ysrc := argmax(lg), argmax(src)
			if int64(top) != mr.PatchedTop1[k] {
				t.Fatalf("prompt %d layer %d: engine top-1 %d, direct %d", d, l, mr.PatchedTop1[k], top)
			}
			if int64(ysrc) != mr.SourceTop1[k] {
				t.Fatalf("prompt %d layer %d: source top-1 %d, direct %d", d, l, mr.SourceTop1[k], ysrc)
			}
			want := -(float64(lg[ysrc]) - logSumExp(lg))
			if math.Abs(float64(mr.Surprisal[k])-want) > 1e-4 {
				t.Fatalf("prompt %d layer %d: surprisal %g, direct %g", d, l, mr.Surprisal[k], want)
			}
			wantPaper := -(float64(src[top]) - logSumExp(src))
			if math.Abs(float64(mr.PaperSurprisal[k])-wantPaper) > 1e-4 {
				t.Fatalf("prompt %d layer %d: paper_surprisal %g, direct %g", d, l, mr.PaperSurprisal[k], wantPaper)
			}
		}
	}
}

func TestAffineErrors(t *testing.T) {
	m := tinyModel(t)
	maps, _ := affineMaps(t, m, 1, 1, 0)
	some := map[int]Affine{0: maps[0], 2: maps[2]}
	wide, _ := torch.FromSlice(make([]float32, 4*4), []int64{4, 4}, torch.Float32, m.Device)
	defer wide.Close()
	prompts := [][]int{{1, 2, 3}}
	for _, c := range []struct {
		name string
		meth Method
		want string
	}{
		{"no maps", Method{Name: "a", Kind: KindAffine}, "needs at least one map"},
		{"missing layer", Method{Name: "a", Kind: KindAffine, Affine: some}, "no affine map for layer 1"},
		{"layer out of range", Method{Name: "a", Kind: KindAffine, Affine: map[int]Affine{9: maps[0]}}, "layer 9, out of range"},
		{"wrong width", Method{Name: "a", Kind: KindAffine, Affine: map[int]Affine{0: {W: wide, B: maps[0].B}}}, "W has shape [4, 4], want [40, 40]"},
	} {
		layers := []int(nil)
		if c.name == "wrong width" {
			layers = []int{0}
		}
		_, err := Evaluate(context.Background(), m, Request{Prompts: prompts, Layers: layers, Methods: []Method{c.meth}, Positions: Positions{Mode: PosLast}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func logSumExp(v []float32) float64 {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = math.Max(mx, float64(x))
	}
	s := 0.0
	for _, x := range v {
		s += math.Exp(float64(x) - mx)
	}
	return mx + math.Log(s)
}
