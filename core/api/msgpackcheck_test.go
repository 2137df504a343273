package api

import (
	"strings"
	"testing"
)

// TestCheckLengths: every value msgpack encodes passes, every strict prefix of it fails, and a
// declared length larger than the request fails.
func TestCheckLengths(t *testing.T) {
	values := []struct {
		name string
		v    any
	}{
		{"nil", nil}, {"bool", true}, {"small ints", []int{0, 1, -1, -32, 127}},
		{"wide ints", []int64{200, -200, 70000, -70000, 1 << 40, -(1 << 40)}},
		{"uints", []uint64{255, 65535, 1 << 32, 1 << 63}}, {"floats", []any{float32(1.5), 2.5}},
		{"strings", []string{"", "a", strings.Repeat("x", 31), strings.Repeat("y", 200), strings.Repeat("z", 70000)}},
		{"bin", [][]byte{{}, make([]byte, 300), make([]byte, 70000)}},
		{"array16", make([]int, 300)}, {"array32", make([]int8, 70000)},
		{"nested maps", map[string]any{"a": map[string]any{"b": []any{1, "c", nil}}, "d": F32Array([]float32{1, 2}, 2)}},
		{"evaluate request", smallEval(1)},
	}
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			b := pack(t, tc.v)
			if err := checkLengths(b); err != nil {
				t.Fatalf("valid encoding refused: %v", err)
			}
			for n := 0; n < len(b); n += max(1, len(b)/50) {
				if checkLengths(b[:n]) == nil {
					t.Fatalf("prefix of %d of %d bytes accepted", n, len(b))
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"array32 of 10^9", []byte{0x91, 0xdd, 0x3b, 0x9a, 0xca, 0x00, 0x01}},
		{"map32 of 2^31", []byte{0xdf, 0x80, 0, 0, 0, 0xa1, 'a', 1}},
		{"str32 of 2^32-1", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}},
		{"invalid byte", []byte{0xc1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkLengths(tc.b); err == nil {
				t.Fatalf("% x accepted", tc.b)
			}
		})
	}
}
