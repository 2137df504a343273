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

// runJobs computes each job's shared prefix once per replica that runs part of it and runs the
// job's rows in slices of size(j) rows, slice b on replica b mod n (a slice that runs out of
// memory is run again in halves: batch.RetryHalving, under the replica's own cap); run gets the
// replica, the prefix on it and the batch's rows, and may be called from several goroutines at
// once. Progress counts the rows finished, of n.
func runJobs(ctx context.Context, f *fleet, jobs []job, n int, opt *Options, size func(job) int,
	run func(ctx context.Context, k int, j job, prefix *gptj.Prefix, idx []int) error) (Stats, error) {
	var st Stats
	done := int64(0)
	for _, j := range jobs {
		sz := size(j)
		slices := (len(j.rows) + sz - 1) / sz
		nr := min(len(f.ms), slices)
		err := batch.Parallel(ctx, nr, func(ctx context.Context, k int) error {
			return withPrefix(ctx, f.ms[k], j, func(prefix *gptj.Prefix) error {
				f.mu.Lock()
				st.PrefixPasses++
				f.mu.Unlock()
				for b := k; b < slices; b += nr {
					lo, hi := b*sz, min(len(j.rows), (b+1)*sz)
					r, err := batch.RetryHalving(ctx, hi-lo, &f.limits[k], func(int) int { return hi - lo }, func(i, e int) error {
						if err := run(ctx, k, j, prefix, j.rows[lo+i:lo+e]); err != nil {
							return err
						}
						f.mu.Lock()
						defer f.mu.Unlock()
						st.Batches++
						done += int64(e - i)
						if opt.Progress != nil {
							opt.Progress(done, int64(n))
						}
						return nil
					})
					f.mu.Lock()
					st.Retries += r
					f.mu.Unlock()
					if err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err != nil {
			return st, err
		}
	}
	return st, nil
}
