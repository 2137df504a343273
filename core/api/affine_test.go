package api

import (
	"context"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

// identityMaps are W = I, b = 0 for layers of a model of width c, as the Python binding sends them.
func identityMaps(c int, layers ...int) []map[string]any {
	var out []map[string]any
	for _, l := range layers {
		w := make([]float32, c*c)
		for i := 0; i < c; i++ {
			w[i*c+i] = 1
		}
		out = append(out, map[string]any{"layer": l, "W": F32Array(w, int64(c), int64(c)), "b": F32Array(make([]float32, c), int64(c))})
	}
	return out
}

// Through the wire an identity affine method is the logit lens; the maps are freed after the call.
func TestEvaluateAffineIdentity(t *testing.T) {
	s := shared(t)
	c, L := s.Model.Cfg.NEmbd, s.Model.Cfg.NLayer
	layers := make([]int, L)
	for i := range layers {
		layers[i] = i
	}
	before := torch.LiveTensors()
	res := call(t, s, "evaluate", map[string]any{
		"texts": []string{"The cat sat on the mat", "a b c"}, "prepend_bos": true, "positions": "last",
		"methods": []map[string]any{{"name": "logitlens"}, {"name": "affine", "kind": "affine", "maps": identityMaps(c, layers...)}}})
	if after := torch.LiveTensors(); after != before {
		t.Fatalf("live tensors %d -> %d", before, after)
	}
	a := evalArrays(t, res)
	for _, f := range []string{"prec1", "patched_top1", "source_top1", "position"} {
		if string(a["logitlens/"+f]) != string(a["affine/"+f]) {
			t.Errorf("%s: identity affine differs from the logit lens", f)
		}
	}
	ms := res["methods"].([]any)
	info := ms[1].(map[string]any)
	if info["kind"] != "affine" || len(info["map_layers"].([]any)) != L {
		t.Errorf("affine method info %v", info)
	}
}

func TestEvaluateAffineErrors(t *testing.T) {
	s := shared(t)
	c, L := s.Model.Cfg.NEmbd, s.Model.Cfg.NLayer
	wide := identityMaps(c+1, 0)
	bad := identityMaps(c, 0)
	bad[0]["b"] = F32Array(make([]float32, c-1), int64(c-1))
	for _, tc := range []struct {
		name string
		spec map[string]any
		want string
	}{
		{"no maps", map[string]any{"name": "a", "kind": "affine"}, "needs maps"},
		{"other width", map[string]any{"name": "a", "kind": "affine", "maps": wide}, "W has shape [17, 17], want [16, 16] (the model's n_embd = 16)"},
		{"bad b", map[string]any{"name": "a", "kind": "affine", "maps": bad}, "b has shape [15], want [16]"},
		{"layer out of range", map[string]any{"name": "a", "kind": "affine", "maps": identityMaps(c, L)}, "layer 2 out of range [0, 2) (the model has n_layer = 2)"},
		{"duplicate layer", map[string]any{"name": "a", "kind": "affine", "maps": identityMaps(c, 0, 0)}, "layer 0 has two maps"},
		{"missing layer", map[string]any{"name": "a", "kind": "affine", "maps": identityMaps(c, 0)}, "no affine map for layer 1"},
		{"with a target", map[string]any{"name": "a", "kind": "affine", "target": "?", "maps": identityMaps(c, 0, 1)}, "takes maps, not a target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := torch.LiveTensors()
			req := map[string]any{"texts": []string{"a b c"}, "methods": []map[string]any{{"name": "logitlens"}, tc.spec}}
			_, err := Call(context.Background(), s, "evaluate", pack(t, req), nil)
			if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (status %d), want an input error containing %q", err, Status(err), tc.want)
			}
			if after := torch.LiveTensors(); after != before {
				t.Fatalf("live tensors %d -> %d", before, after)
			}
		})
	}
}
