package batch

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/simplescope/simplescope/core/torch"
)

// Parallel runs f(ctx, k) for k in [0, n), each in a goroutine of its own (one per model
// replica), and waits for all of them. Each goroutine is locked to an OS thread with the
// caller's torch thread count: OpenMP keeps the count per thread and CPU results depend on it in
// the last bits, so a replica computes what the caller's thread would. The first failure
// cancels the others' ctx; Parallel returns the first error that is not a cancellation (which
// that failure may have caused), else the first cancellation. n = 1 runs f on the calling
// goroutine.
func Parallel(ctx context.Context, n int, f func(ctx context.Context, k int) error) error {
	if n == 1 {
		return f(ctx, 0)
	}
	threads := torch.NumThreads()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := 0; k < n; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if threads > 0 && torch.NumThreads() != threads {
				_ = torch.SetNumThreads(threads)
			}
			if errs[k] = f(ctx, k); errs[k] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}
