package batch

import (
	"context"
	"sync"

	"github.com/simplescope/simplescope/core/torch"
)

// Budget is the memory, in bytes, that a batch may still take on a CUDA device: what PyTorch's
// caching allocator will hand out before it hits the per-process limit (fraction × total, set
// by torch.cuda.set_per_process_memory_fraction; 1 when unknown) less what live tensors of the
// process (the weights, other models, the caller's own tensors) already hold, and at most what
// the device can still give: the driver's free memory plus the allocator's cached, unused
// blocks (memory other processes took is not ours). Never negative.
func Budget(m torch.MemStats) int64 {
	frac := m.Fraction
	if frac <= 0 || frac > 1 {
		frac = 1
	}
	limit := int64(frac*float64(m.Total)) - m.Allocated
	cached := max(0, m.Reserved-m.Allocated)
	return max(0, min(limit, m.DriverFree+cached))
}

// Tokens is a batch's token budget for a memory budget of budget bytes: a quarter of it at
// ~24·C activation values per token in the model dtype (q, k, v, attention out, the MLP's 4C,
// residual copies), within [1 024, 262 144] tokens.
func Tokens(budget int64, nEmbd, dtypeSize int) int {
	per := int64(24*nEmbd) * int64(dtypeSize)
	return int(max(1024, min(budget/4/per, 262144)))
}

type fractionKey struct{}

// WithMemoryFraction returns ctx carrying the caller's per-process memory fraction (the Python
// binding reads torch.cuda.get_per_process_memory_fraction and sends it with each request),
// used by DeviceBudget when the shim cannot read the fraction itself. f <= 0: none.
func WithMemoryFraction(ctx context.Context, f float64) context.Context {
	if f <= 0 {
		return ctx
	}
	return context.WithValue(ctx, fractionKey{}, f)
}

// DeviceBudget is Budget for dev with the figures read now: ok is false on the CPU (batch sizes
// there do not follow memory) or when the figures cannot be read. A fraction carried by ctx
// (WithMemoryFraction) is used when the shim cannot read the allocator's.
func DeviceBudget(ctx context.Context, dev torch.Device) (bytes int64, ok bool) {
	budgetMu.RLock()
	fake := fakeBudget
	budgetMu.RUnlock()
	if fake != nil {
		return fake(dev)
	}
	if dev.Type != torch.DevCUDA {
		return 0, false
	}
	m, err := torch.CUDAMemory(dev.Index)
	if err != nil {
		return 0, false
	}
	return Budget(withFraction(ctx, m)), true
}

// withFraction fills in m's fraction from ctx (WithMemoryFraction) when the shim could not read it.
func withFraction(ctx context.Context, m torch.MemStats) torch.MemStats {
	if m.Fraction < 0 && ctx != nil {
		if f, ok := ctx.Value(fractionKey{}).(float64); ok {
			m.Fraction = f
		}
	}
	return m
}

var (
	budgetMu   sync.RWMutex
	fakeBudget func(torch.Device) (int64, bool)
)

// FakeBudget makes DeviceBudget return f's figure, on any device, until the returned function
// restores the real one: tests on the CPU of code whose batch sizes follow free memory.
func FakeBudget(f func(torch.Device) (int64, bool)) (restore func()) {
	budgetMu.Lock()
	prev := fakeBudget
	fakeBudget = f
	budgetMu.Unlock()
	return func() {
		budgetMu.Lock()
		fakeBudget = prev
		budgetMu.Unlock()
	}
}
