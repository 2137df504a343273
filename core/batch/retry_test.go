package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

func TestRetryHalving(t *testing.T) {
	oom := fmt.Errorf("linear: %w", torch.ErrOOM)
	other := errors.New("shape mismatch")
	cases := []struct {
		name         string
		n, budget    int                  // items, and the caller's own budget per batch
		fail         func(i, j int) error // the error of running items [i, j)
		wantAttempts [][2]int             // every batch tried, in order
		wantLimit    int
		wantRetries  int
		wantErr      error
	}{
		{"no failure", 7, 3, func(int, int) error { return nil },
			[][2]int{{0, 3}, {3, 6}, {6, 7}}, 0, 0, nil},
		{"the failing batch is halved on the first retry", 16, 10, func(i, j int) error {
			if j-i > 5 {
				return oom
			}
			return nil
		}, [][2]int{{0, 10}, {0, 5}, {5, 10}, {10, 15}, {15, 16}}, 5, 1, nil},
		{"halving repeats until the batch fits", 7, 8, func(i, j int) error {
			if j-i > 2 {
				return oom
			}
			return nil
		}, [][2]int{{0, 7}, {0, 3}, {0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}}, 1, 2, nil},
		{"one item out of memory", 4, 4, func(i, j int) error { return oom },
			[][2]int{{0, 4}, {0, 2}, {0, 1}}, 1, 2, torch.ErrOOM},
		{"other errors are not retried", 4, 4, func(i, j int) error { return other },
			[][2]int{{0, 4}}, 0, 0, other},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tried [][2]int
			limit := 0
			next := func(i int) int { return min(tc.n, i+tc.budget) }
			run := func(i, j int) error {
				tried = append(tried, [2]int{i, j})
				return tc.fail(i, j)
			}
			retries, err := RetryHalving(context.Background(), tc.n, &limit, next, run)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(tried, tc.wantAttempts) || limit != tc.wantLimit || retries != tc.wantRetries {
				t.Fatalf("tried %v, limit %d, retries %d; want %v, %d, %d", tried, limit, retries, tc.wantAttempts, tc.wantLimit, tc.wantRetries)
			}
		})
	}
	t.Run("cancelled after a batch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		limit, runs := 2, 0
		_, err := RetryHalving(ctx, 6, &limit, func(i int) int { return 6 }, func(i, j int) error {
			runs++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || runs != 1 {
			t.Fatalf("error %v after %d batches, want cancelled after 1", err, runs)
		}
	})
}
