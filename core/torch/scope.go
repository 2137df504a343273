package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"slices"
	"unsafe"
)

// Scope owns the tensors its ops create and records the first error. After an error every
// further op returns nil without calling the shim, so a sequence of ops needs one error check at
// the end. Close frees every owned tensor that was not Kept. A Scope is not safe for concurrent
// use; use one per goroutine.
type Scope struct {
	err   error
	owned []*Tensor
}

// NewScope returns an empty scope.
func NewScope() *Scope { return &Scope{} }

// Err returns the first error of the scope's ops.
func (s *Scope) Err() error { return s.err }

// Fail records err (if it is the first) so that later ops are skipped.
func (s *Scope) Fail(err error) {
	if s.err == nil && err != nil {
		s.err = err
	}
}

// Close frees every tensor the scope still owns.
func (s *Scope) Close() {
	for _, t := range s.owned {
		t.Close()
	}
	s.owned = nil
}

// Keep releases ts from the scope: the caller now owns them. It returns ts[0] for chaining.
func (s *Scope) Keep(ts ...*Tensor) *Tensor {
	for _, t := range ts {
		s.disown(t)
	}
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

// Own adds t to the scope so that Close frees it (e.g. a tensor made by FromSlice).
func (s *Scope) Own(t *Tensor, err error) *Tensor {
	if err != nil {
		s.Fail(err)
		return nil
	}
	if t != nil {
		s.owned = append(s.owned, t)
	}
	return t
}

// Free closes t now and forgets it (for large intermediates in long sequences).
func (s *Scope) Free(ts ...*Tensor) {
	for _, t := range ts {
		s.disown(t)
		t.Close() // a no-op on nil
	}
}

// disown forgets t without closing it, if the scope owns it.
func (s *Scope) disown(t *Tensor) {
	if i := slices.Index(s.owned, t); i >= 0 {
		s.owned = slices.Delete(s.owned, i, i+1)
	}
}

// ready reports whether the op may run: no earlier error and every input alive.
func (s *Scope) ready(op string, ts ...*Tensor) bool {
	if s.err != nil {
		return false
	}
	for i, t := range ts {
		if t == nil || t.h == nil {
			s.err = fmt.Errorf("torch %s: input %d is nil or closed", op, i)
			return false
		}
	}
	return true
}

func (s *Scope) result(op string, h *C.sst_tensor, e C.sst_error) *Tensor {
	if err := check(e); err != nil {
		s.err = fmt.Errorf("%s: %w", op, err)
		return nil
	}
	t := wrap(h)
	s.owned = append(s.owned, t)
	return t
}

func (s *Scope) unary(op string, f func(*C.sst_tensor, **C.sst_tensor) C.sst_error, a *Tensor) *Tensor {
	if !s.ready(op, a) {
		return nil
	}
	var out *C.sst_tensor
	e := f(a.h, &out)
	return s.result(op, out, e)
}

func (s *Scope) binary(op string, f func(*C.sst_tensor, *C.sst_tensor, **C.sst_tensor) C.sst_error, a, b *Tensor) *Tensor {
	if !s.ready(op, a, b) {
		return nil
	}
	var out *C.sst_tensor
	e := f(a.h, b.h, &out)
	return s.result(op, out, e)
}

// FromSlice is FromSlice owned by the scope.
func ScopeFromSlice[T Element](s *Scope, data []T, shape []int64, dst DType, dev Device) *Tensor {
	if s.err != nil {
		return nil
	}
	return s.Own(FromSlice(data, shape, dst, dev))
}

// FromBytes is FromBytes owned by the scope.
func (s *Scope) FromBytes(data []byte, src DType, shape []int64, dst DType, dev Device) *Tensor {
	if s.err != nil {
		return nil
	}
	return s.Own(FromBytes(data, src, shape, dst, dev))
}

// Zeros makes a zero tensor.
func (s *Scope) Zeros(shape []int64, dt DType, dev Device) *Tensor {
	if !s.ready("zeros") {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_zeros(shapePtr(shape), C.int64_t(len(shape)), C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), &out)
	return s.result("zeros", out, e)
}

// Full makes a tensor filled with v.
func (s *Scope) Full(shape []int64, v float64, dt DType, dev Device) *Tensor {
	if !s.ready("full") {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_full(shapePtr(shape), C.int64_t(len(shape)), C.double(v), C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), &out)
	return s.result("full", out, e)
}

// Arange is [start, end) as a 1-D tensor.
func (s *Scope) Arange(start, end int64, dt DType, dev Device) *Tensor {
	if !s.ready("arange") {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_arange(C.int64_t(start), C.int64_t(end), C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), &out)
	return s.result("arange", out, e)
}

// To converts dtype and/or device.
func (s *Scope) To(t *Tensor, dt DType, dev Device) *Tensor {
	if !s.ready("to", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_to(t.h, C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), &out)
	return s.result("to", out, e)
}

func (s *Scope) Clone(t *Tensor) *Tensor      { return s.unary("clone", cClone, t) }
func (s *Scope) Contiguous(t *Tensor) *Tensor { return s.unary("contiguous", cContiguous, t) }
func (s *Scope) Neg(t *Tensor) *Tensor        { return s.unary("neg", cNeg, t) }
func (s *Scope) Sin(t *Tensor) *Tensor        { return s.unary("sin", cSin, t) }
func (s *Scope) Cos(t *Tensor) *Tensor        { return s.unary("cos", cCos, t) }
func (s *Scope) GeluTanh(t *Tensor) *Tensor   { return s.unary("gelu_tanh", cGelu, t) }
func (s *Scope) Add(a, b *Tensor) *Tensor     { return s.binary("add", cAdd, a, b) }
func (s *Scope) Sub(a, b *Tensor) *Tensor     { return s.binary("sub", cSub, a, b) }
func (s *Scope) Mul(a, b *Tensor) *Tensor     { return s.binary("mul", cMul, a, b) }
func (s *Scope) Div(a, b *Tensor) *Tensor     { return s.binary("div", cDiv, a, b) }
func (s *Scope) Eq(a, b *Tensor) *Tensor      { return s.binary("eq", cEq, a, b) }
func (s *Scope) Matmul(a, b *Tensor) *Tensor  { return s.binary("matmul", cMatmul, a, b) }

// Embedding looks up rows of weight (V, C) for integer ids (...) -> (..., C).
func (s *Scope) Embedding(weight, ids *Tensor) *Tensor {
	return s.binary("embedding", cEmbedding, weight, ids)
}

// AddScalar is a + v.
func (s *Scope) AddScalar(a *Tensor, v float64) *Tensor {
	if !s.ready("add_scalar", a) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_add_scalar(a.h, C.double(v), &out) // call before reading out (operand order is unspecified)
	return s.result("add_scalar", out, e)
}

// MulScalar is a * v.
func (s *Scope) MulScalar(a *Tensor, v float64) *Tensor {
	if !s.ready("mul_scalar", a) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_mul_scalar(a.h, C.double(v), &out) // call before reading out (operand order is unspecified)
	return s.result("mul_scalar", out, e)
}

// Reshape returns a tensor of the given shape (-1 infers one dimension).
func (s *Scope) Reshape(t *Tensor, shape ...int64) *Tensor {
	if !s.ready("reshape", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_reshape(t.h, shapePtr(shape), C.int64_t(len(shape)), &out) // call before reading out (operand order is unspecified)
	return s.result("reshape", out, e)
}

// Permute reorders dimensions.
func (s *Scope) Permute(t *Tensor, dims ...int64) *Tensor {
	if !s.ready("permute", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_permute(t.h, shapePtr(dims), C.int64_t(len(dims)), &out) // call before reading out (operand order is unspecified)
	return s.result("permute", out, e)
}

// Expand broadcasts to shape (-1 keeps a dimension).
func (s *Scope) Expand(t *Tensor, shape ...int64) *Tensor {
	if !s.ready("expand", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_expand(t.h, shapePtr(shape), C.int64_t(len(shape)), &out) // call before reading out (operand order is unspecified)
	return s.result("expand", out, e)
}

// Transpose swaps two dimensions.
func (s *Scope) Transpose(t *Tensor, d0, d1 int64) *Tensor {
	if !s.ready("transpose", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_transpose(t.h, C.int64_t(d0), C.int64_t(d1), &out) // call before reading out (operand order is unspecified)
	return s.result("transpose", out, e)
}

// Narrow is t[..., start:start+length, ...] along dim (a view).
func (s *Scope) Narrow(t *Tensor, dim, start, length int64) *Tensor {
	if !s.ready("narrow", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), &out) // call before reading out (operand order is unspecified)
	return s.result("narrow", out, e)
}

// Select is t[..., index, ...] along dim, removing that dimension.
func (s *Scope) Select(t *Tensor, dim, index int64) *Tensor {
	if !s.ready("select", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_select(t.h, C.int64_t(dim), C.int64_t(index), &out) // call before reading out (operand order is unspecified)
	return s.result("select", out, e)
}

// Unsqueeze inserts a dimension of size 1.
func (s *Scope) Unsqueeze(t *Tensor, dim int64) *Tensor {
	if !s.ready("unsqueeze", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_unsqueeze(t.h, C.int64_t(dim), &out) // call before reading out (operand order is unspecified)
	return s.result("unsqueeze", out, e)
}

func handles(ts []*Tensor) []*C.sst_tensor {
	hs := make([]*C.sst_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.h
	}
	return hs
}

// Cat concatenates along dim.
func (s *Scope) Cat(ts []*Tensor, dim int64) *Tensor {
	if !s.ready("cat", ts...) {
		return nil
	}
	if len(ts) == 0 {
		s.Fail(fmt.Errorf("cat: no tensors"))
		return nil
	}
	hs := handles(ts)
	// The handle array holds C pointers only, so passing Go memory is allowed.
	var out *C.sst_tensor
	e := C.sst_cat((**C.sst_tensor)(unsafe.Pointer(&hs[0])), C.int64_t(len(hs)), C.int64_t(dim), &out) // call before reading out (operand order is unspecified)
	return s.result("cat", out, e)
}

// Stack stacks along a new dim.
func (s *Scope) Stack(ts []*Tensor, dim int64) *Tensor {
	if !s.ready("stack", ts...) {
		return nil
	}
	if len(ts) == 0 {
		s.Fail(fmt.Errorf("stack: no tensors"))
		return nil
	}
	hs := handles(ts)
	var out *C.sst_tensor
	e := C.sst_stack((**C.sst_tensor)(unsafe.Pointer(&hs[0])), C.int64_t(len(hs)), C.int64_t(dim), &out) // call before reading out (operand order is unspecified)
	return s.result("stack", out, e)
}

// IndexSelect picks entries index (int64, 1-D) along dim.
func (s *Scope) IndexSelect(t *Tensor, dim int64, index *Tensor) *Tensor {
	if !s.ready("index_select", t, index) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_index_select(t.h, C.int64_t(dim), index.h, &out) // call before reading out (operand order is unspecified)
	return s.result("index_select", out, e)
}

// IndexCopy returns a copy of t with t[index[i]] along dim replaced by src[i].
func (s *Scope) IndexCopy(t *Tensor, dim int64, index, src *Tensor) *Tensor {
	if !s.ready("index_copy", t, index, src) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_index_copy(t.h, C.int64_t(dim), index.h, src.h, &out) // call before reading out (operand order is unspecified)
	return s.result("index_copy", out, e)
}

// Gather is torch.gather.
func (s *Scope) Gather(t *Tensor, dim int64, index *Tensor) *Tensor {
	if !s.ready("gather", t, index) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_gather(t.h, C.int64_t(dim), index.h, &out) // call before reading out (operand order is unspecified)
	return s.result("gather", out, e)
}

// MaskedFill sets entries where mask is true to v.
func (s *Scope) MaskedFill(t, mask *Tensor, v float64) *Tensor {
	if !s.ready("masked_fill", t, mask) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_masked_fill(t.h, mask.h, C.double(v), &out) // call before reading out (operand order is unspecified)
	return s.result("masked_fill", out, e)
}

// Where is cond ? a : b.
func (s *Scope) Where(cond, a, b *Tensor) *Tensor {
	if !s.ready("where", cond, a, b) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_where(cond.h, a.h, b.h, &out) // call before reading out (operand order is unspecified)
	return s.result("where", out, e)
}

// Softmax along dim.
func (s *Scope) Softmax(t *Tensor, dim int64) *Tensor {
	if !s.ready("softmax", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_softmax(t.h, C.int64_t(dim), &out) // call before reading out (operand order is unspecified)
	return s.result("softmax", out, e)
}

// LogSoftmax along dim.
func (s *Scope) LogSoftmax(t *Tensor, dim int64) *Tensor {
	if !s.ready("log_softmax", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_log_softmax(t.h, C.int64_t(dim), &out) // call before reading out (operand order is unspecified)
	return s.result("log_softmax", out, e)
}

// Argmax along dim (first maximal index).
func (s *Scope) Argmax(t *Tensor, dim int64, keepdim bool) *Tensor {
	if !s.ready("argmax", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_argmax(t.h, C.int64_t(dim), cbool(keepdim), &out) // call before reading out (operand order is unspecified)
	return s.result("argmax", out, e)
}

// Sum along dim.
func (s *Scope) Sum(t *Tensor, dim int64, keepdim bool) *Tensor {
	if !s.ready("sum", t) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_sum(t.h, C.int64_t(dim), cbool(keepdim), &out) // call before reading out (operand order is unspecified)
	return s.result("sum", out, e)
}

// TopK returns the k largest values and their indices along dim.
func (s *Scope) TopK(t *Tensor, k, dim int64) (values, indices *Tensor) {
	if !s.ready("topk", t) {
		return nil, nil
	}
	var v, i *C.sst_tensor
	if err := check(C.sst_topk(t.h, C.int64_t(k), C.int64_t(dim), &v, &i)); err != nil {
		s.err = fmt.Errorf("topk: %w", err)
		return nil, nil
	}
	vt, it := wrap(v), wrap(i)
	s.owned = append(s.owned, vt, it)
	return vt, it
}

// Linear is x @ w.T + bias (bias may be nil).
func (s *Scope) Linear(x, w, bias *Tensor) *Tensor {
	if !s.ready("linear", x, w) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_linear(x.h, w.h, bias.handle(), &out) // call before reading out (operand order is unspecified)
	return s.result("linear", out, e)
}

// LayerNorm over the last dimension.
func (s *Scope) LayerNorm(x, w, b *Tensor, eps float64) *Tensor {
	if !s.ready("layer_norm", x) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_layer_norm(x.h, w.handle(), b.handle(), C.double(eps), &out) // call before reading out (operand order is unspecified)
	return s.result("layer_norm", out, e)
}

// RotaryGPTJ applies GPT-J's interleaved rotary embedding to the first rot dims of the last axis.
func (s *Scope) RotaryGPTJ(x, sin, cos *Tensor, rot int64) *Tensor {
	if !s.ready("rotary_gptj", x, sin, cos) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_rotary_gptj(x.h, sin.h, cos.h, C.int64_t(rot), &out) // call before reading out (operand order is unspecified)
	return s.result("rotary_gptj", out, e)
}

// CausalMask turns valid (B, T) into the (B, 1, T, T) boolean attention mask: key j is visible
// to query i when j <= i and key j is valid. Built on the tensor's device.
func (s *Scope) CausalMask(valid *Tensor) *Tensor {
	if !s.ready("causal_mask", valid) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_causal_mask(valid.h, &out)
	return s.result("causal_mask", out, e)
}

// Attention: q (B, H, Tq, D), k/v (B, H, Tk, D), mask bool broadcastable to (B, H, Tq, Tk) with
// true = may attend, or nil. Scores in float32; output in v's dtype.
func (s *Scope) Attention(q, k, v, mask *Tensor) *Tensor {
	if !s.ready("attention", q, k, v) {
		return nil
	}
	var out *C.sst_tensor
	e := C.sst_attention(q.h, k.h, v.h, mask.handle(), &out) // call before reading out (operand order is unspecified)
	return s.result("attention", out, e)
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// C function values for the generic helpers.
var (
	cClone      = func(a *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_clone(a, o) }
	cContiguous = func(a *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_contiguous(a, o) }
	cNeg        = func(a *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_neg(a, o) }
	cSin        = func(a *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_sin(a, o) }
	cCos        = func(a *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_cos(a, o) }
	cGelu       = func(a *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_gelu_tanh(a, o) }
	cAdd        = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_add(a, b, o) }
	cSub        = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_sub(a, b, o) }
	cMul        = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_mul(a, b, o) }
	cDiv        = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_div(a, b, o) }
	cEq         = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_eq(a, b, o) }
	cMatmul     = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_matmul(a, b, o) }
	cEmbedding  = func(a, b *C.sst_tensor, o **C.sst_tensor) C.sst_error { return C.sst_embedding(a, b, o) }
)
