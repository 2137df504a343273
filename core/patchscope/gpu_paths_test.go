package patchscope

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// The GPU behaviours of the engine, checked on the CPU: batch sizes from a (faked) memory
// budget unless deterministic, the halving of a batch that runs out of memory (injected), no
// transfer inside the block loop, and the work split over replicas.

func gpuTestRequest(r *rand.Rand, n int) Request {
	var prompts [][]int
	for i := 0; i < n; i++ {
		prompts = append(prompts, randomTokens(r, 20+r.IntN(20)))
	}
	tg := randomTokens(r, 6)
	return Request{
		Prompts: prompts,
		Methods: []Method{
			{Name: "logitlens", Kind: KindLogitLens},
			{Name: "simplescope", Kind: KindPatch, Target: tg[:1], Placeholder: 0, TargetMode: TargetSame},
			{Name: "patchscope", Kind: KindPatch, Target: tg, Placeholder: 5, TargetMode: TargetSame},
		},
		Positions: Positions{Mode: PosRandom}, Seed: 3,
	}
}

// sameResults reports the first difference between two results' arrays, bit for bit ("" when
// equal).
func sameResults(a, b *Result) string {
	for mi := range a.Methods {
		x, y := a.Methods[mi], b.Methods[mi]
		for _, arr := range []struct {
			name string
			p, q []float32
		}{{"prec1", x.Prec1, y.Prec1}, {"surprisal", x.Surprisal, y.Surprisal}, {"paper_surprisal", x.PaperSurprisal, y.PaperSurprisal}} {
			for i := range arr.p {
				if math.Float32bits(arr.p[i]) != math.Float32bits(arr.q[i]) {
					return fmt.Sprintf("%s %s[%d]: %v vs %v", x.Name, arr.name, i, arr.p[i], arr.q[i])
				}
			}
		}
		if !slices.Equal(x.PatchedTop1, y.PatchedTop1) || !slices.Equal(x.SourceTop1, y.SourceTop1) || !slices.Equal(x.Position, y.Position) {
			return x.Name + ": top-1 or positions differ"
		}
	}
	return ""
}

// TestDeterministicIgnoresFreeMemory: with deterministic, the batches are the same whatever
// free memory the device reports (here faked, on the CPU), and so are the results, bit for bit;
// without it the source batches follow the memory figure.
func TestDeterministicIgnoresFreeMemory(t *testing.T) {
	m := tinyModel(t)
	req := gpuTestRequest(rand.New(rand.NewPCG(5, 6)), 60) // ~1 800 tokens
	run := func(deterministic bool, budget int64) *Result {
		t.Helper()
		defer batch.FakeBudget(func(torch.Device) (int64, bool) { return budget, true })()
		rq := req
		rq.Deterministic = deterministic
		res, err := Evaluate(context.Background(), m, rq)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// the tiny model's 24·C·4 B = 3 840 B per token: 1 MiB → the 1 024-token floor, 1 GiB → all
	small, large := int64(1)<<20, int64(1)<<30
	a, b := run(true, small), run(true, large)
	if a.Stats.SourceBatches != b.Stats.SourceBatches || a.Stats.SourceTokens != b.Stats.SourceTokens || a.Stats.PatchBatches != b.Stats.PatchBatches {
		t.Errorf("deterministic: batches differ with the free memory: %+v vs %+v", a.Stats, b.Stats)
	}
	if d := sameResults(a, b); d != "" {
		t.Errorf("deterministic: results differ with the free memory: %s", d)
	}
	c, d := run(false, small), run(false, large)
	if c.Stats.SourceBatches == d.Stats.SourceBatches {
		t.Errorf("not deterministic: %d source batches with 1 MiB and with 1 GiB free; the budget should change them", c.Stats.SourceBatches)
	}
	t.Logf("source batches: deterministic %d / %d; from memory %d (1 MiB) / %d (1 GiB)",
		a.Stats.SourceBatches, b.Stats.SourceBatches, c.Stats.SourceBatches, d.Stats.SourceBatches)
}

// TestOOMHalvesFailingBatchThroughEvaluate: with out of memory injected above N rows, the first
// continuation batch (2N+2 rows) fails once and is run again as its first half, which fits; the
// cap stays for the rest, and the results equal the run without the fault.
func TestOOMHalvesFailingBatchThroughEvaluate(t *testing.T) {
	m := tinyModel(t)
	req := gpuTestRequest(rand.New(rand.NewPCG(7, 8)), 24)
	req.Layers = []int{0, 1}
	req.PatchRows, req.BatchTokens, req.ChunkPrompts = 22, 4096, 100
	want, err := Evaluate(context.Background(), m, req)
	if err != nil {
		t.Fatal(err)
	}
	n0 := torch.InjectedOOMs()
	restore := torch.InjectOOM(12) // source batches (≤ 12 prompts) fit; 22 continuation rows do not, 11 do
	req.BatchTokens = 12 * 40
	got, err := Evaluate(context.Background(), m, req)
	restore()
	if err != nil {
		t.Fatalf("evaluate with injected OOM: %v", err)
	}
	if n := torch.InjectedOOMs() - n0; n != 1 || got.Stats.Retries != 1 {
		t.Errorf("%d injected failures, %d retries: want the failing batch halved on its first retry (1 and 1)", n, got.Stats.Retries)
	}
	// 24 rows per (method, start block) group: 22 fails, then 11 + 11 + 2 under the cap, and
	// every later group in 11s (3 groups for the 2 patch methods × 2 layers … counted below)
	wantBatches := 0
	for _, g := range []int{24, 24, 24, 24, 48} { // patch methods × layers 0, 1; logit lens: both layers
		wantBatches += (g + 10) / 11
	}
	if got.Stats.PatchBatches != wantBatches {
		t.Errorf("%d continuation batches, want %d (11 rows each after the halving)", got.Stats.PatchBatches, wantBatches)
	}
	if d := sameResultsTol(want, got, 1e-5); d != "" {
		t.Errorf("results after the retry differ: %s", d)
	}
}

// sameResultsTol is sameResults with a tolerance on the float metrics (batch sizes differ).
func sameResultsTol(a, b *Result, tol float64) string {
	for mi := range a.Methods {
		x, y := a.Methods[mi], b.Methods[mi]
		if !slices.Equal(x.PatchedTop1, y.PatchedTop1) || !slices.Equal(x.SourceTop1, y.SourceTop1) {
			return x.Name + ": top-1 differs"
		}
		for i := range x.Surprisal {
			if math.Abs(float64(x.Surprisal[i]-y.Surprisal[i])) > tol || math.Abs(float64(x.PaperSurprisal[i]-y.PaperSurprisal[i])) > tol {
				return fmt.Sprintf("%s surprisal[%d]: %v vs %v", x.Name, i, x.Surprisal[i], y.Surprisal[i])
			}
		}
	}
	return ""
}

// TestEvaluateTransfersOutsideLoops: an evaluation moves data between host and device only
// outside the block loops (per batch, not per layer).
func TestEvaluateTransfersOutsideLoops(t *testing.T) {
	m := tinyModel(t)
	req := gpuTestRequest(rand.New(rand.NewPCG(9, 10)), 10)
	c0 := torch.TransferCounts()
	res, err := Evaluate(context.Background(), m, req)
	if err != nil {
		t.Fatal(err)
	}
	d := torch.TransferCounts().Sub(c0)
	if d.HotUploads != 0 || d.HotSyncs != 0 {
		t.Errorf("%d uploads and %d syncs inside block loops", d.HotUploads, d.HotSyncs)
	}
	// per target prefix (2 methods): ids, positions, validity; per source batch: those and the
	// row indices; per continuation batch: two row gathers and the source top-1
	st := res.Stats
	if max := int64(3*2 + 4*st.SourceBatches + 3*st.PatchBatches); d.Uploads > max {
		t.Errorf("%d uploads for %d source and %d continuation batches, want at most %d", d.Uploads, st.SourceBatches, st.PatchBatches, max)
	}
	t.Logf("transfers %+v for stats %+v", d, st)
}

// TestEvaluateOnReplicas: the work split over two replicas (two CPU copies of the model) gives
// the one-replica results bit for bit.
func TestEvaluateOnReplicas(t *testing.T) {
	m := tinyModel(t)
	m2, err := gptj.Load(modelDir, torch.Float32, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	req := gpuTestRequest(rand.New(rand.NewPCG(11, 12)), 21)
	req.ChunkPrompts = 4 // six chunks: three per replica
	var calls int
	var last int64
	req.Progress = func(done, total int64) {
		calls++
		if done < last || done > total {
			t.Errorf("progress %d of %d after %d", done, total, last)
		}
		last = done
	}
	one, err := Evaluate(context.Background(), m, req)
	if err != nil {
		t.Fatal(err)
	}
	calls, last = 0, 0
	two, err := EvaluateOn(context.Background(), []*gptj.Model{m, m2}, req)
	if err != nil {
		t.Fatal(err)
	}
	if d := sameResults(one, two); d != "" {
		t.Errorf("two replicas vs one: %s", d)
	}
	if one.Stats.SourceBatches != two.Stats.SourceBatches || one.Stats.PatchedRows != two.Stats.PatchedRows {
		t.Errorf("stats %+v vs %+v", one.Stats, two.Stats)
	}
	if total := int64(21 * m.Cfg.NLayer * 3); last != total || calls == 0 {
		t.Errorf("progress ended at %d of %d after %d calls", last, total, calls)
	}
	// a failure on one replica ends the whole evaluation with it
	bad := req
	bad.Prompts = append(append([][]int(nil), req.Prompts...), []int{vocab + 5})
	if _, err := EvaluateOn(context.Background(), []*gptj.Model{m, m2}, bad); err == nil {
		t.Error("an out-of-range token evaluated without error")
	}
}
