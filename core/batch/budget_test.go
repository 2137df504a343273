package batch

import (
	"context"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
)

const gib = int64(1) << 30

// TestBudget: the memory a batch may take is the allocator's per-process limit (fraction ×
// total) less what live tensors hold, and no more than the device can still give (the driver's
// free memory plus the allocator's cached blocks).
func TestBudget(t *testing.T) {
	cases := []struct {
		name string
		m    torch.MemStats
		want int64
	}{
		{"the fraction binds: 0.5 × 100 − 30 held by tensors", torch.MemStats{DriverFree: 50 * gib, Total: 100 * gib, Allocated: 30 * gib, Reserved: 40 * gib, Fraction: 0.5}, 20 * gib},
		{"the whole device: 100 − 30 held, 10 of it cached", torch.MemStats{DriverFree: 60 * gib, Total: 100 * gib, Allocated: 30 * gib, Reserved: 40 * gib, Fraction: 1}, 70 * gib},
		{"other processes hold the rest: 5 free + 10 cached", torch.MemStats{DriverFree: 5 * gib, Total: 100 * gib, Allocated: 30 * gib, Reserved: 40 * gib, Fraction: 1}, 15 * gib},
		{"unknown fraction counts as 1", torch.MemStats{DriverFree: 60 * gib, Total: 100 * gib, Allocated: 30 * gib, Reserved: 40 * gib, Fraction: -1}, 70 * gib},
		{"tensors already hold more than the fraction allows", torch.MemStats{DriverFree: 60 * gib, Total: 100 * gib, Allocated: 30 * gib, Reserved: 30 * gib, Fraction: 0.25}, 0},
		{"a quarter of an 80 GiB device, 13 GiB of weights", torch.MemStats{DriverFree: 66 * gib, Total: 80 * gib, Allocated: 13 * gib, Reserved: 14 * gib, Fraction: 0.25}, 7 * gib},
	}
	for _, tc := range cases {
		if got := Budget(tc.m); got != tc.want {
			t.Errorf("%s: Budget %d MiB, want %d MiB", tc.name, got>>20, tc.want>>20)
		}
	}
}

func TestMemoryFractionFromContext(t *testing.T) {
	m := torch.MemStats{DriverFree: 60 * gib, Total: 100 * gib, Allocated: 30 * gib, Reserved: 40 * gib, Fraction: -1}
	ctx := WithMemoryFraction(context.Background(), 0.5)
	if got := Budget(withFraction(ctx, m)); got != 20*gib {
		t.Errorf("fraction 0.5 from the request: budget %d MiB, want %d", got>>20, 20*gib>>20)
	}
	m.Fraction = 0.9 // the shim's own reading wins
	if got := Budget(withFraction(ctx, m)); got != 60*gib {
		t.Errorf("the allocator's fraction 0.9: budget %d MiB, want %d", got>>20, 60*gib>>20)
	}
	if WithMemoryFraction(context.Background(), 0) != context.Background() {
		t.Error("a fraction of 0 must leave the context as it is")
	}
}

func TestTokens(t *testing.T) {
	// GPT-J 6B in float16: 24 × 4096 × 2 B = 192 KiB per token; a quarter of the budget
	per := int64(24 * 4096 * 2)
	for _, tc := range []struct {
		budget int64
		want   int
	}{{0, 1024}, {20 * gib, int(20 * gib / 4 / per)}, {1 << 50, 262144}} {
		if got := Tokens(tc.budget, 4096, 2); got != tc.want {
			t.Errorf("Tokens(%d MiB) = %d, want %d", tc.budget>>20, got, tc.want)
		}
	}
}

func TestDeviceBudget(t *testing.T) {
	if _, ok := DeviceBudget(context.Background(), torch.CPU); ok {
		t.Error("the CPU has no memory budget")
	}
	restore := FakeBudget(func(torch.Device) (int64, bool) { return 123, true })
	if b, ok := DeviceBudget(context.Background(), torch.CPU); !ok || b != 123 {
		t.Errorf("faked budget: %d, %v", b, ok)
	}
	restore()
	if _, ok := DeviceBudget(context.Background(), torch.CPU); ok {
		t.Error("the fake outlived its restore")
	}
}
