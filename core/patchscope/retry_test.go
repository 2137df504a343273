package patchscope

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

// retryHalving is the one out-of-memory path of both the source and the continuation pass.
func TestRetryHalving(t *testing.T) {
	oom := fmt.Errorf("linear: %w", torch.ErrOOM)
	other := errors.New("shape mismatch")
	cases := []struct {
		name        string
		n, size     int
		fail        func(i, j int) error // the error of running items [i, j)
		wantBatches [][2]int             // the batches that succeeded
		wantSize    int
		wantRetries int
		wantErr     error
	}{
		{"no failure", 7, 3, func(int, int) error { return nil },
			[][2]int{{0, 3}, {3, 6}, {6, 7}}, 3, 0, nil},
		{"out of memory above 2 items", 7, 8, func(i, j int) error {
			if j-i > 2 {
				return oom
			}
			return nil
		}, [][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 7}}, 2, 2, nil},
		{"one item out of memory", 4, 4, func(i, j int) error { return oom },
			nil, 1, 2, torch.ErrOOM},
		{"other errors are not retried", 4, 4, func(i, j int) error { return other },
			nil, 4, 0, other},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &engine{res: &Result{}}
			size := tc.size
			var got [][2]int
			next := func(i int) int { return min(tc.n, i+size) }
			run := func(i, j int) error {
				if err := tc.fail(i, j); err != nil {
					return err
				}
				got = append(got, [2]int{i, j})
				return nil
			}
			err := e.retryHalving(context.Background(), tc.n, &size, next, run)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.wantBatches) || size != tc.wantSize || e.res.Stats.Retries != tc.wantRetries {
				t.Fatalf("batches %v, size %d, retries %d; want %v, %d, %d", got, size, e.res.Stats.Retries, tc.wantBatches, tc.wantSize, tc.wantRetries)
			}
		})
	}
	t.Run("cancelled after a batch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		e := &engine{res: &Result{}}
		size, runs := 2, 0
		err := e.retryHalving(ctx, 6, &size, func(i int) int { return min(6, i+size) }, func(i, j int) error {
			runs++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || runs != 1 {
			t.Fatalf("error %v after %d batches, want cancelled after 1", err, runs)
		}
	})
}
