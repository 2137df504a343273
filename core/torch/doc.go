// Package torch is the Go side of simplescope's libtorch shim (csrc/, a plain C ABI over ATen).
//
// It is the only package that speaks cgo. Tensors are opaque handles that must be closed
// explicitly: GPU memory is invisible to Go's garbage collector, so a finalizer is never the way
// memory is freed. Ops are methods of a Scope, which owns the tensors it creates, records the
// first error (later ops become no-ops) and frees everything not kept when closed:
//
//	s := torch.NewScope()
//	defer s.Close()
//	y := s.Linear(x, w, b) // (B, T, C)
//	z := s.GeluTanh(y)
//	if err := s.Err(); err != nil { ... }
//	return s.Keep(z), nil
//
// Every shim call returns its own error (no thread-local state), so goroutines may call from
// any OS thread. LiveTensors counts the handles alive in the process, for leak tests.
//
// # Adding an op
//
// An op is a shim function plus one Scope method:
//
//  1. in csrc/shim.h, its declaration: it returns sst_error and writes the new tensor through a
//     last argument sst_tensor **out;
//  2. in csrc/shim.cpp, its body inside SST_BEGIN/SST_END (SST_UNARY/SST_BINARY for an op of
//     one or two tensors and nothing else); make build rebuilds the shim;
//  3. in scope.go, the method: its body is one call of Scope.op, which applies the rules (nil
//     inputs and earlier errors short-circuit, the first error is recorded, the scope owns the
//     result), given the op's name for errors, the shim call as a closure, and the tensors whose
//     handles (.h) the call reads;
//  4. in torch_test.go, a check against a Go reference (TestOpsAgainstGoReferences).
//
// For a shim function sst_clamp(t, lo, hi, out):
//
//	func (s *Scope) Clamp(t *Tensor, lo, hi float64) *Tensor {
//		return s.op("clamp", func(o cOut) cErr {
//			return C.sst_clamp(t.h, C.double(lo), C.double(hi), o)
//		}, t)
//	}
//
// A tensor the shim accepts as NULL (an optional bias or mask) is passed as t.handle() and left
// out of op's inputs; an op that reads no tensors (Zeros, an import from a DLPack pointer) passes
// none. An op of one or two tensors and nothing else is a line in the unary/binary
// table plus its adapter in cOps; an op over a list of tensors (cat, stack) uses listOp. An op
// that does not make exactly one tensor (TopK makes two; an export hands back a pointer) is
// written out like TopK: s.ready first, check on the shim's error, every tensor it makes appended
// to s.owned.
package torch
