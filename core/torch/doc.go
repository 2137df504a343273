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
package torch
