// Package batch holds the one out-of-memory policy of every batched pass (evaluate's source and
// continuation passes, patch, generate, hidden_states): run items in consecutive batches and,
// when a batch runs out of memory, run it again as its first half.
package batch

import (
	"context"
	"fmt"

	"github.com/simplescope/simplescope/core/torch"
)

// RetryHalving runs items [0, n) in consecutive batches. next(i) is the end of the batch that
// starts at item i under the caller's own budget (tokens, rows); the batch is further capped at
// *limit items (*limit < 1: no cap yet). run(i, j) runs items [i, j).
//
// When a batch of more than one item runs out of memory, *limit becomes half of that batch and
// the batch is formed again from item i: the batch that failed shrinks on the first retry, and
// the cap stays for the batches after it (and for later calls that share *limit). Any other
// error, or one item out of memory, ends the loop. ctx is checked after every batch. It returns
// the number of retries.
func RetryHalving(ctx context.Context, n int, limit *int, next func(i int) int, run func(i, j int) error) (retries int, err error) {
	for i := 0; i < n; {
		j := next(i)
		if *limit >= 1 {
			j = min(j, i+*limit)
		}
		err := run(i, j)
		if torch.IsOOM(err) && j-i > 1 {
			*limit = (j - i) / 2
			retries++
			continue
		}
		if err != nil {
			return retries, err
		}
		if err := ctx.Err(); err != nil {
			return retries, fmt.Errorf("cancelled: %w", err)
		}
		i = j
	}
	return retries, nil
}
