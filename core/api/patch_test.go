package api

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The patching methods driven through Call, the way the Python binding drives them, checked
// against invariants the model itself gives: patching a prompt's own hidden state into it changes
// nothing, and greedy generation equals one full forward per new token.

// floats takes a float32 tensor result out of the registry and returns its values and shape.
func floats(t *testing.T, v any) ([]float32, []int64) {
	t.Helper()
	m, _ := v.(map[string]any)
	id, ok := refID(m)
	if !ok {
		t.Fatalf("not a tensor handle: %v", v)
	}
	x, err := TakeTensor(id)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	vals, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return vals, x.Shape()
}

// toInt64 reads a msgpack integer, whichever width and signedness it was decoded as.
func toInt64(v any) int64 {
	r := reflect.ValueOf(v)
	switch {
	case r.CanInt():
		return r.Int()
	case r.CanUint():
		return int64(r.Uint())
	}
	panic(fmt.Sprintf("not an integer: %T", v))
}

func tokenIDs(t *testing.T, s *Session, texts ...string) [][]int {
	t.Helper()
	res := call(t, s, "tokenize", map[string]any{"texts": texts})
	var out [][]int
	for _, seq := range res["ids"].([]any) {
		var ids []int
		for _, id := range seq.([]any) {
			ids = append(ids, int(toInt64(id)))
		}
		out = append(out, ids)
	}
	return out
}

// lastLogits returns the model's own next-token logits after seq (run_with_cache).
func lastLogits(t *testing.T, s *Session, seq []int) []float32 {
	t.Helper()
	res := call(t, s, "run_with_cache", map[string]any{"tokens": [][]int{seq}, "names": []string{}})
	v, shape := floats(t, res["logits"])
	V := int(shape[2])
	return v[(len(seq)-1)*V : len(seq)*V]
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestPatchOwnHiddenStateChangesNothing(t *testing.T) {
	s := shared(t)
	seq := tokenIDs(t, s, "The quick brown fox jumps over the lazy dog")[0]
	want := lastLogits(t, s, seq)
	for _, site := range []string{"resid_post", "resid_pre"} {
		for _, layer := range []int{0, s.Model.Cfg.NLayer - 1} {
			for _, pos := range []int{2, -1} {
				readLayer := layer
				if site == "resid_pre" { // the input of block l is the output of block l-1
					if layer == 0 {
						continue
					}
					readLayer = layer - 1
				}
				h := call(t, s, "hidden_states", map[string]any{
					"tokens": [][]int{seq}, "layers": []int{readLayer}, "positions": []int{pos}})
				res := call(t, s, "patch", map[string]any{
					"targets": map[string]any{"tokens": [][]int{seq, seq}}, "site": site,
					"layers": []int{layer, layer}, "positions": [][]int{{pos}, {pos, 0}},
					"vectors": h["vectors"]}) // the handle, borrowed by the call
				id, _ := refID(h["vectors"].(map[string]any))
				ReleaseTensor(id)
				got, shape := floats(t, res["logits"])
				if !slices.Equal(shape, []int64{2, int64(len(want))}) {
					t.Fatalf("logits shape %v", shape)
				}
				if d := maxDiff(got[:len(want)], want); d > 1e-5 {
					t.Errorf("%s layer %d position %d: patched logits differ from the plain forward by %.3g", site, layer, pos, d)
				}
				// a write at position 0 reaches the last position unless it is the last block's output
				if d := maxDiff(got[len(want):], want); d < 1e-3 && (site == "resid_pre" || layer < s.Model.Cfg.NLayer-1) {
					t.Errorf("%s layer %d: writing position 0's vector elsewhere changed nothing (%.3g)", site, layer, d)
				}
			}
		}
	}
}

func TestGenerateEqualsRepeatedForward(t *testing.T) {
	s := shared(t)
	targets := tokenIDs(t, s, "Once upon a time", "1 2 3 4 5 6 7 8 9 10 11")
	const n = 6
	res := call(t, s, "generate", map[string]any{"targets": map[string]any{"tokens": targets}, "max_new_tokens": n})
	for i, seq := range targets {
		var want []int
		for k := 0; k < n; k++ {
			lg := lastLogits(t, s, append(slices.Clone(seq), want...))
			next := 0
			for j := range lg {
				if lg[j] > lg[next] {
					next = j
				}
			}
			if next == s.Model.Cfg.EOS {
				break
			}
			want = append(want, next)
		}
		var got []int
		for _, id := range res["tokens"].([]any)[i].([]any) {
			got = append(got, int(toInt64(id)))
		}
		if !slices.Equal(got, want) {
			t.Errorf("row %d: generate %v, one forward per token %v", i, got, want)
		}
	}
}

func TestPatchRefusesBadInput(t *testing.T) {
	s := shared(t)
	vec := F32Array(make([]float32, 2*s.Model.Cfg.NEmbd), 2, int64(s.Model.Cfg.NEmbd))
	base := func() map[string]any {
		return map[string]any{"targets": map[string]any{"texts": []string{"Hello world"}},
			"layers": []int{0, 1}, "positions": [][]int{{-1}, {0}}, "vectors": vec}
	}
	cases := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"layer out of range", func(r map[string]any) { r["layers"] = []int{0, 9} }, "targets row 1: layer 9 out of range"},
		{"position outside", func(r map[string]any) { r["positions"] = [][]int{{-1}, {7}} }, "positions row 1: position 7 outside"},
		{"rows mismatch", func(r map[string]any) { r["layers"] = []int{0} }, "1 layers and 2 position lists"},
		{"no vectors", func(r map[string]any) { delete(r, "vectors") }, "give either vectors or source"},
		{"wrong width", func(r map[string]any) { r["vectors"] = F32Array(make([]float32, 6), 2, 3) }, "vectors: shape [2, 3]"},
		{"bad site", func(r map[string]any) { r["site"] = "mlp_out" }, `site "mlp_out"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.edit(r)
			_, err := Call(t.Context(), s, "patch", pack(t, r), nil)
			if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (status %d), want an input error containing %q", err, Status(err), tc.want)
			}
		})
	}
}
