package data

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

func TestNumpyPermutationMatchesNumpy(t *testing.T) {
	cases := []struct {
		seed int64
		n    int
	}{
		{42, 0}, {42, 1}, {42, 2}, {42, 10}, {42, 1000}, {42, 3398}, {42, 200000},
		{0, 17}, {1, 5000}, {7, 65537}, {12345, 999}, {1 << 32, 300}, {1<<62 + 12345, 300},
	}
	args := make([]string, len(cases))
	for i, c := range cases {
		args[i] = fmt.Sprintf("%d:%d", c.seed, c.n)
	}
	out := testutil.RunPython(t, filepath.Join("testdata", "numpy_ref.py"), args...)
	var ref map[string]struct {
		Raw  []string `json:"raw"`
		Perm []int    `json:"perm"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("decode numpy_ref.py output: %v", err)
	}
	for i, c := range cases {
		t.Run(args[i], func(t *testing.T) {
			want, ok := ref[args[i]]
			if !ok {
				t.Fatalf("no reference for %s", args[i])
			}
			g, err := NewDefaultRNG(c.seed)
			if err != nil {
				t.Fatal(err)
			}
			for k, ws := range want.Raw {
				w, err := strconv.ParseUint(ws, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				if got := g.Uint64(); got != w {
					t.Fatalf("raw output %d: got %d, numpy %d", k, got, w)
				}
			}
			got, err := NumpyPermutation(c.n, c.seed)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want.Perm) {
				t.Fatalf("length %d, numpy %d", len(got), len(want.Perm))
			}
			for k := range got {
				if got[k] != want.Perm[k] {
					t.Fatalf("first mismatch at %d: got %d, numpy %d", k, got[k], want.Perm[k])
				}
			}
		})
	}
}

func TestNumpyPermutationNegativeSeed(t *testing.T) {
	if _, err := NumpyPermutation(3, -1); err == nil {
		t.Fatal("negative seed accepted; numpy rejects it")
	}
}
