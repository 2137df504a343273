package api

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/torch"
)

// The GPU behaviours end to end through Call, on the CPU: the failing batch halved on its first
// retry (out of memory injected), no transfer inside a block loop, batch sizes independent of
// free memory with deterministic, and a model loaded on two devices ("cpu,cpu") giving one
// device's results.

// patchRequest patches n random vectors into one target at a middle position (the tail path:
// every row runs (B, T, C) blocks) and at its last position (the one-position path) alternately.
func patchRequest(s *Session, n int) map[string]any {
	r := rand.New(rand.NewPCG(1, 2))
	C := s.Model.Cfg.NEmbd
	v := make([]float32, n*C)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	layers, positions := make([]int, n), make([][]int, n)
	for i := range layers {
		layers[i] = i % s.Model.Cfg.NLayer
		positions[i] = []int{2}
		if i%3 == 0 {
			positions[i] = []int{-1}
		}
	}
	return map[string]any{
		"targets": map[string]any{"texts": []string{"The Eiffel Tower is in the city of"}},
		"layers":  layers, "positions": positions, "vectors": F32Array(v, int64(n), int64(C)),
	}
}

func statInt(t *testing.T, res map[string]any, key string) int64 {
	t.Helper()
	st, _ := res["stats"].(map[string]any)
	v, ok := st[key]
	if !ok {
		t.Fatalf("stats have no %q: %v", key, st)
	}
	return toInt64(v)
}

// TestOOMHalvedOnFirstRetryThroughCall: with linear failing above 12 rows, a patch batch of 20
// rows and an evaluate continuation batch of 20 rows each fail once and are run again as their
// first half; the results are those without the fault.
func TestOOMHalvedOnFirstRetryThroughCall(t *testing.T) {
	s := shared(t)
	preq := patchRequest(s, 40)
	preq["batch_rows"] = 20
	ereq := smallEval(9)
	texts := []string{}
	for i := 0; i < 20; i++ {
		texts = append(texts, fmt.Sprintf("Prompt %d of the halving test.", i))
	}
	// source batches of at most ~10 prompts (which fit), continuation batches of 20 rows
	ereq["texts"], ereq["patch_rows"], ereq["layers"], ereq["batch_tokens"] = texts, 20, []int{0}, 100
	for _, tc := range []struct {
		method      string
		req         map[string]any
		retriesStat string
	}{{"patch", preq, "retries"}, {"evaluate", ereq, "oom_retries"}} {
		t.Run(tc.method, func(t *testing.T) {
			want := call(t, s, tc.method, tc.req)
			n0 := torch.InjectedOOMs()
			restore := torch.InjectOOM(12)
			got := call(t, s, tc.method, tc.req)
			restore()
			if n, r := torch.InjectedOOMs()-n0, statInt(t, got, tc.retriesStat); n != 1 || r != 1 {
				t.Errorf("%d injected failures, %d retries: want the failing batch halved on its first retry (1, 1)", n, r)
			}
			if tc.method == "patch" {
				w, _ := floats(t, want["logits"])
				g, _ := floats(t, got["logits"])
				if d := maxDiff(w, g); d > 1e-4 {
					t.Errorf("logits after the retry differ by %.3g", d)
				}
				if b := statInt(t, got, "batches"); b != statInt(t, want, "batches")*2 {
					t.Errorf("%d batches after halving 20-row batches, want twice %d", b, statInt(t, want, "batches"))
				}
			} else if d := sameArraysTol(evalArrays(t, want), evalArrays(t, got)); d != "" {
				t.Errorf("evaluate after the retry: %s", d)
			}
		})
	}
}

// TestNoTransfersInLoopsThroughCall: evaluate, patch, generate and hidden_states upload and read
// per batch, never inside a block loop.
func TestNoTransfersInLoopsThroughCall(t *testing.T) {
	s := shared(t)
	greq := patchRequest(s, 6)
	greq["max_new_tokens"] = 4
	for _, tc := range []struct {
		method string
		req    map[string]any
	}{
		{"evaluate", smallEval(1)}, {"patch", patchRequest(s, 12)}, {"generate", greq},
		{"hidden_states", map[string]any{"texts": []string{"a b c", "d e"}, "layers": []int{0, 1}, "positions": []int{-1, 0}}},
	} {
		c0 := torch.TransferCounts()
		call(t, s, tc.method, tc.req)
		d := torch.TransferCounts().Sub(c0)
		if d.HotUploads != 0 || d.HotSyncs != 0 || d.Uploads == 0 {
			t.Errorf("%s: transfers %+v, want some but none inside a block loop", tc.method, d)
		}
	}
}

// TestDeterministicThroughCall: a patch's batches follow the (faked) free memory, unless
// deterministic.
func TestDeterministicThroughCall(t *testing.T) {
	s := shared(t)
	req := patchRequest(s, 200)
	batches := func(deterministic bool, budget int64) int64 {
		defer batch.FakeBudget(func(torch.Device) (int64, bool) { return budget, true })()
		req["deterministic"] = deterministic
		return statInt(t, call(t, s, "patch", req), "batches")
	}
	if a, b := batches(true, 1<<20), batches(true, 1<<40); a != b {
		t.Errorf("deterministic: %d batches with 1 MiB free, %d with 1 TiB", a, b)
	}
	if a, b := batches(false, 1<<20), batches(false, 1<<40); a == b {
		t.Errorf("not deterministic: %d batches with 1 MiB and with 1 TiB free; want them to follow memory", a)
	}
}

// TestTwoDevicesGiveOneDevicesResults: a model loaded on "cpu,cpu" (two replicas) evaluates,
// patches and generates exactly as on "cpu".
func TestTwoDevicesGiveOneDevicesResults(t *testing.T) {
	one := shared(t)
	two, err := Open(modelDir(t, "tiny"), "cpu,cpu", "float32")
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	if devs := call(t, two, "config", nil)["devices"]; fmt.Sprint(devs) != "[cpu cpu]" {
		t.Fatalf("devices %v", devs)
	}
	ereq := smallEval(4)
	ereq["chunk_prompts"] = 1 // three chunks over two replicas
	if d := sameArrays(evalArrays(t, call(t, one, "evaluate", ereq)), evalArrays(t, call(t, two, "evaluate", ereq))); d != "" {
		t.Errorf("evaluate on two replicas: %s", d)
	}
	preq := patchRequest(one, 30)
	preq["batch_rows"] = 4
	w, _ := floats(t, call(t, one, "patch", preq)["logits"])
	g, _ := floats(t, call(t, two, "patch", preq)["logits"])
	if !slices.Equal(w, g) {
		t.Errorf("patch on two replicas differs by %.3g", maxDiff(w, g))
	}
	greq := patchRequest(one, 9)
	greq["batch_rows"], greq["max_new_tokens"] = 2, 5
	greq["targets"] = map[string]any{"texts": []string{"Once upon a time", "1 2 3 4 5 6", "The cat"}}
	greq["layers"], greq["positions"] = []int{0, 1, 0}, [][]int{{-1}, {1}, {0}}
	greq["vectors"] = patchRequest(one, 3)["vectors"]
	a, b := call(t, one, "generate", greq)["tokens"], call(t, two, "generate", greq)["tokens"]
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("generate on two replicas: %v vs %v", b, a)
	}
	if _, err := Open(modelDir(t, "tiny"), "cpu,cuda:0", "float32"); err == nil || Status(err) != StatusInput {
		t.Errorf("mixed CPU and CUDA replicas: %v", err)
	}
}
