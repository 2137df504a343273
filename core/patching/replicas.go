package patching

import (
	"context"
	"fmt"
	"sync"

	"github.com/simplescope/simplescope/core/batch"
	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// Work over model replicas (one per device). A job's rows are cut into slices of the batch
// size, slice b running on replica b mod n with the job's prefix computed once on each replica
// that has a slice: without out-of-memory retries every slice is one batch, the batch one device
// would have run, so the results equal one replica's.

// fleet is the replicas of one call, with each replica's out-of-memory cap (batch.RetryHalving)
// and its copy of the vectors.
type fleet struct {
	ms     []*gptj.Model
	limits []int
	vecs   []*torch.Tensor // per replica: the vectors on its device (nil: none)
	mu     sync.Mutex      // guards what the slices' callbacks share
	owned  *torch.Scope    // the copies of the vectors
}

// newFleet prepares replicas ms for vectors vecs (on ms[0]'s device, or nil).
func newFleet(ms []*gptj.Model, vecs *torch.Tensor) (*fleet, error) {
	f := &fleet{ms: ms, limits: make([]int, len(ms)), vecs: make([]*torch.Tensor, len(ms)), owned: torch.NewScope()}
	for k, m := range ms {
		if k > 0 && m.Device != ms[0].Device && vecs != nil {
			f.vecs[k] = f.owned.To(vecs, vecs.DType(), m.Device)
		} else {
			f.vecs[k] = vecs
		}
	}
	if err := f.owned.Err(); err != nil {
		f.close()
		return nil, fmt.Errorf("vectors to the replicas' devices: %w", err)
	}
	return f, nil
}

func (f *fleet) close() { f.owned.Close() }

// job runs the n rows of j in slices of size rows over the replicas: run(ctx, k, prefix, lo, hi)
// runs rows [lo, hi) of the slice on replica k, retried in halves when out of memory
// (batch.RetryHalving, the replica's cap). It returns the retries and the prefix passes run.
func (f *fleet) job(ctx context.Context, j job, size int, run func(ctx context.Context, k int, prefix *gptj.Prefix, lo, hi int) error) (retries, prefixes int, err error) {
	n := len(j.rows)
	slices := (n + size - 1) / size
	nr := min(len(f.ms), slices)
	err = batch.Parallel(ctx, nr, func(ctx context.Context, k int) error {
		return runJob(ctx, f.ms[k], j, func(prefix *gptj.Prefix) error {
			f.mu.Lock()
			prefixes++
			f.mu.Unlock()
			for b := k; b < slices; b += nr {
				lo, hi := b*size, min(n, (b+1)*size)
				r, err := batch.RetryHalving(ctx, hi-lo, &f.limits[k], func(int) int { return hi - lo }, func(i, e int) error {
					return run(ctx, k, prefix, lo+i, lo+e)
				})
				f.mu.Lock()
				retries += r
				f.mu.Unlock()
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	return retries, prefixes, err
}
