package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Transfers counts host→device uploads and device→host reads (each a synchronisation on CUDA)
// since the process started, and how many of each happened inside a hot loop (HotLoop).
type Transfers struct {
	Uploads, Syncs       int64
	HotUploads, HotSyncs int64
}

// Sub is t − u, field by field (the transfers between two readings).
func (t Transfers) Sub(u Transfers) Transfers {
	return Transfers{t.Uploads - u.Uploads, t.Syncs - u.Syncs, t.HotUploads - u.HotUploads, t.HotSyncs - u.HotSyncs}
}

// TransferCounts reads the shim's transfer counters. Uploads are FromBytes/FromSlice (and To
// from the CPU to CUDA); syncs are Bytes/ToSlice/Float32s/Int64s (and To from CUDA to the CPU).
// They count on the CPU too, where the same calls would be transfers on CUDA.
func TransferCounts() Transfers {
	var u, s, hu, hs C.int64_t
	if check(C.sst_transfer_counts(&u, &s, &hu, &hs)) != nil {
		return Transfers{}
	}
	return Transfers{int64(u), int64(s), int64(hu), int64(hs)}
}

// HotLoop marks entering a loop that must not transfer (the loop over blocks) and returns the
// function that marks leaving it. The mark is process-wide.
func HotLoop() (leave func()) {
	C.sst_hot_loop(1)
	return func() { C.sst_hot_loop(0) }
}

// InjectOOM makes Linear fail as out of memory when its input is (B, T, C) with B > rows, until
// the returned function restores the previous setting (a test hook for the batch-halving
// policy; rows 0 turns it off).
func InjectOOM(rows int) (restore func()) {
	prev := injectedRows.Swap(int64(rows))
	C.sst_debug_oom_rows(C.int64_t(rows), nil)
	return func() {
		injectedRows.Store(prev)
		C.sst_debug_oom_rows(C.int64_t(prev), nil)
	}
}

var injectedRows atomic.Int64

// InjectedOOMs is the number of out-of-memory failures InjectOOM has caused so far.
func InjectedOOMs() int64 {
	var n C.int64_t
	C.sst_debug_oom_rows(-1, &n)
	return int64(n)
}

// SDPA modes of Attention (SetSDPA).
const (
	SDPANever = 0 // always the explicit float32 softmax
	SDPACUDA  = 1 // at::scaled_dot_product_attention on CUDA tensors (the default)
	SDPAAll   = 2 // on every device (to test the SDPA path on the CPU)
)

// SetSDPA chooses when Attention runs at::scaled_dot_product_attention and returns the previous
// mode. It is process-wide.
func SetSDPA(mode int) int { return int(C.sst_set_sdpa(C.int(mode))) }

// MemStats is a CUDA device's memory as the driver and PyTorch's caching allocator see it.
type MemStats struct {
	DriverFree int64   // free on the device (cudaMemGetInfo)
	Total      int64   // the device's memory
	Allocated  int64   // held by live tensors of this process
	Reserved   int64   // held by the caching allocator (allocated + cached)
	Fraction   float64 // torch.cuda.set_per_process_memory_fraction; -1 when the shim cannot read it
}

// CUDAMemory reads device dev's memory figures.
func CUDAMemory(dev int) (MemStats, error) {
	var f, t, a, r C.int64_t
	var frac C.double
	if err := check(C.sst_cuda_memory(C.int64_t(dev), &f, &t, &a, &r, &frac)); err != nil {
		return MemStats{}, err
	}
	return MemStats{DriverFree: int64(f), Total: int64(t), Allocated: int64(a), Reserved: int64(r), Fraction: float64(frac)}, nil
}

// CUDAFractionKnown reports whether CUDAMemory reads the memory fraction (the shim was built
// with the CUDA headers).
func CUDAFractionKnown() bool { return C.sst_cuda_memory_fraction_known() != 0 }

// AttentionParts is attention of q (B, H, T, D) over key/value parts ks[i], vs[i]
// (B|1, H, P_i, D) taken jointly, as if concatenated along the keys but without the copy: a part
// of batch 1 (a shared prefix) is never expanded. mask: boolean broadcastable to
// (B, H, T, ΣP_i), true = may attend, or nil.
func (s *Scope) AttentionParts(q *Tensor, ks, vs []*Tensor, mask *Tensor) *Tensor {
	if s.err == nil && (len(ks) == 0 || len(ks) != len(vs)) {
		s.Fail(fmt.Errorf("attention_parts: %d key and %d value parts", len(ks), len(vs)))
		return nil
	}
	inputs := append(append([]*Tensor{q}, ks...), vs...)
	return s.op("attention_parts", func(o cOut) cErr {
		// C memory for the handle arrays: Go memory passed to C may not hold Go pointers, and
		// these arrays hold only C pointers, but two arrays in one call read more clearly as C.
		n := len(ks)
		arr := (*[1 << 20]*C.sst_tensor)(C.malloc(C.size_t(2*n) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		defer C.free(unsafe.Pointer(arr))
		for i := 0; i < n; i++ {
			arr[i], arr[n+i] = ks[i].h, vs[i].h
		}
		return C.sst_attention_parts(q.h, &arr[0], &arr[n], C.int64_t(n), mask.handle(), o)
	}, inputs...)
}
