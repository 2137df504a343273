package api

import (
	"strings"
	"testing"
)

// TestArrayShapeMustFitItsData: a shape whose element count wraps around int64 (found by
// FuzzCall: 8 × (2^61 + 3) ≡ 24 bytes) or has a negative dimension is refused, never used to
// size a slice or a tensor; through Call it is an input error, not a panic.
func TestArrayShapeMustFitItsData(t *testing.T) {
	data := make([]byte, 24)
	for _, shape := range [][]int64{{1<<61 + 3}, {-1, -3}, {3, -1}, {1 << 62, 1 << 62, 3}} {
		if _, err := (Array{DType: "int64", Shape: shape, Data: data}).Ints(); err == nil {
			t.Errorf("Ints() accepted shape %v for %d bytes", shape, len(data))
		}
	}
	if v, err := (Array{DType: "int64", Shape: []int64{3}, Data: data}).Ints(); err != nil || len(v) != 3 {
		t.Fatalf("a fitting shape: %v, %v", v, err)
	}
	s := shared(t)
	req := map[string]any{"texts": []string{"a b c"}, "methods": []map[string]any{{"name": "logitlens"}},
		"positions": Array{DType: "int64", Shape: []int64{1<<61 + 3}, Data: data}}
	_, err := Call(t.Context(), s, "evaluate", pack(t, req), nil)
	if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("evaluate with an overflowing positions shape: %v (status %d), want an input error naming the shape", err, Status(err))
	}
	vec := map[string]any{"dtype": "float32", "shape": []int64{1<<62 + 1, 16}, "data": make([]byte, 64)}
	_, err = Call(t.Context(), s, "patch", pack(t, map[string]any{"targets": map[string]any{"texts": []string{"Hi"}},
		"layers": []int{0}, "positions": [][]int{{-1}}, "vectors": vec}), nil)
	if err == nil || Status(err) != StatusInput {
		t.Fatalf("patch with an overflowing vectors shape: %v (status %d), want an input error", err, Status(err))
	}
}
