package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"slices"
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

// The shim's types, named short so that an op's shim call fits on one line: a shim function that
// makes a tensor reads input handles (cT; cIn for an array of them), writes the new handle
// through a cOut and returns a cErr (NULL on success).
type (
	cT   = *C.sst_tensor
	cIn  = **C.sst_tensor
	cOut = **C.sst_tensor
	cErr = C.sst_error
)

// op is the body of every op that makes one tensor. name is the op's name in errors; call makes
// the shim call, writing the new handle through its argument; inputs are the tensors whose
// handles (.h) call reads. The rules every op follows:
//
//   - Nil inputs after an error short-circuit: when the scope already has an error, or one of
//     inputs is nil or closed (recorded as "torch name: input i is nil or closed"), call is not
//     made and op returns nil.
//   - The first error is recorded: a failed call records "name: torch: <ATen message>" and
//     returns nil; Err returns it, and every later op short-circuits.
//   - The Scope owns the result: Close frees it unless it was Kept (or Freed) first.
//
// A tensor the shim accepts as NULL (an optional bias or mask) is passed as t.handle() and left
// out of inputs.
func (s *Scope) op(name string, call func(out cOut) cErr, inputs ...*Tensor) *Tensor {
	if !s.ready(name, inputs...) {
		return nil
	}
	var out *C.sst_tensor
	if err := check(call(&out)); err != nil {
		s.err = fmt.Errorf("%s: %w", name, err)
		return nil
	}
	t := wrap(out)
	s.owned = append(s.owned, t)
	return t
}

// unary and binary are op for a shim function of one or two tensors and nothing else, given as
// its adapter in cOps (a Go function value cannot name a C function).
func (s *Scope) unary(name string, f func(a cT, o cOut) cErr, a *Tensor) *Tensor {
	return s.op(name, func(o cOut) cErr { return f(a.h, o) }, a)
}

func (s *Scope) binary(name string, f func(a, b cT, o cOut) cErr, a, b *Tensor) *Tensor {
	return s.op(name, func(o cOut) cErr { return f(a.h, b.h, o) }, a, b)
}

// listOp is op for a shim function that reads an array of tensors (cat, stack): it refuses an
// empty ts and passes call the n handles of ts.
func (s *Scope) listOp(name string, ts []*Tensor, call func(hs cIn, n C.int64_t, out cOut) cErr) *Tensor {
	if s.err == nil && len(ts) == 0 {
		s.Fail(fmt.Errorf("%s: no tensors", name))
		return nil
	}
	return s.op(name, func(o cOut) cErr {
		// The handle array holds C pointers only, so passing this Go memory to C is allowed.
		hs := make([]*C.sst_tensor, len(ts))
		for i, t := range ts {
			hs[i] = t.h
		}
		return call(&hs[0], C.int64_t(len(hs)), o)
	}, ts...)
}

// ScopeFromSlice is FromSlice owned by the scope.
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
	return s.op("zeros", func(o cOut) cErr {
		return C.sst_zeros(shapePtr(shape), C.int64_t(len(shape)), C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), o)
	})
}

// Full makes a tensor filled with v.
func (s *Scope) Full(shape []int64, v float64, dt DType, dev Device) *Tensor {
	return s.op("full", func(o cOut) cErr {
		return C.sst_full(shapePtr(shape), C.int64_t(len(shape)), C.double(v), C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), o)
	})
}

// Arange is [start, end) as a 1-D tensor.
func (s *Scope) Arange(start, end int64, dt DType, dev Device) *Tensor {
	return s.op("arange", func(o cOut) cErr {
		return C.sst_arange(C.int64_t(start), C.int64_t(end), C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), o)
	})
}

// To converts dtype and/or device.
func (s *Scope) To(t *Tensor, dt DType, dev Device) *Tensor {
	return s.op("to", func(o cOut) cErr {
		return C.sst_to(t.h, C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), o)
	}, t)
}

// Ops of one or two tensors and nothing else: a line here plus the shim function's adapter in
// cOps.

func (s *Scope) Clone(t *Tensor) *Tensor      { return s.unary("clone", cClone, t) }
func (s *Scope) Contiguous(t *Tensor) *Tensor { return s.unary("contiguous", cContiguous, t) }
func (s *Scope) Neg(t *Tensor) *Tensor        { return s.unary("neg", cNeg, t) }
func (s *Scope) Sin(t *Tensor) *Tensor        { return s.unary("sin", cSin, t) }
func (s *Scope) Cos(t *Tensor) *Tensor        { return s.unary("cos", cCos, t) }
func (s *Scope) GeluTanh(t *Tensor) *Tensor   { return s.unary("gelu_tanh", cGeluTanh, t) }
func (s *Scope) Gelu(t *Tensor) *Tensor       { return s.unary("gelu", cGelu, t) }
func (s *Scope) Silu(t *Tensor) *Tensor       { return s.unary("silu", cSilu, t) }
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

// cOps: the adapters of the shim functions that unary and binary call.
var (
	cClone      = func(a cT, o cOut) cErr { return C.sst_clone(a, o) }
	cContiguous = func(a cT, o cOut) cErr { return C.sst_contiguous(a, o) }
	cNeg        = func(a cT, o cOut) cErr { return C.sst_neg(a, o) }
	cSin        = func(a cT, o cOut) cErr { return C.sst_sin(a, o) }
	cCos        = func(a cT, o cOut) cErr { return C.sst_cos(a, o) }
	cGeluTanh   = func(a cT, o cOut) cErr { return C.sst_gelu_tanh(a, o) }
	cGelu       = func(a cT, o cOut) cErr { return C.sst_gelu(a, o) }
	cSilu       = func(a cT, o cOut) cErr { return C.sst_silu(a, o) }
	cAdd        = func(a, b cT, o cOut) cErr { return C.sst_add(a, b, o) }
	cSub        = func(a, b cT, o cOut) cErr { return C.sst_sub(a, b, o) }
	cMul        = func(a, b cT, o cOut) cErr { return C.sst_mul(a, b, o) }
	cDiv        = func(a, b cT, o cOut) cErr { return C.sst_div(a, b, o) }
	cEq         = func(a, b cT, o cOut) cErr { return C.sst_eq(a, b, o) }
	cMatmul     = func(a, b cT, o cOut) cErr { return C.sst_matmul(a, b, o) }
	cEmbedding  = func(a, b cT, o cOut) cErr { return C.sst_embedding(a, b, o) }
)

// AddScalar is a + v.
func (s *Scope) AddScalar(a *Tensor, v float64) *Tensor {
	return s.op("add_scalar", func(o cOut) cErr { return C.sst_add_scalar(a.h, C.double(v), o) }, a)
}

// MulScalar is a * v.
func (s *Scope) MulScalar(a *Tensor, v float64) *Tensor {
	return s.op("mul_scalar", func(o cOut) cErr { return C.sst_mul_scalar(a.h, C.double(v), o) }, a)
}

// Reshape returns a tensor of the given shape (-1 infers one dimension).
func (s *Scope) Reshape(t *Tensor, shape ...int64) *Tensor {
	return s.op("reshape", func(o cOut) cErr {
		return C.sst_reshape(t.h, shapePtr(shape), C.int64_t(len(shape)), o)
	}, t)
}

// Permute reorders dimensions.
func (s *Scope) Permute(t *Tensor, dims ...int64) *Tensor {
	return s.op("permute", func(o cOut) cErr {
		return C.sst_permute(t.h, shapePtr(dims), C.int64_t(len(dims)), o)
	}, t)
}

// Expand broadcasts to shape (-1 keeps a dimension).
func (s *Scope) Expand(t *Tensor, shape ...int64) *Tensor {
	return s.op("expand", func(o cOut) cErr {
		return C.sst_expand(t.h, shapePtr(shape), C.int64_t(len(shape)), o)
	}, t)
}

// Transpose swaps two dimensions.
func (s *Scope) Transpose(t *Tensor, d0, d1 int64) *Tensor {
	return s.op("transpose", func(o cOut) cErr {
		return C.sst_transpose(t.h, C.int64_t(d0), C.int64_t(d1), o)
	}, t)
}

// Narrow is t[..., start:start+length, ...] along dim (a view).
func (s *Scope) Narrow(t *Tensor, dim, start, length int64) *Tensor {
	return s.op("narrow", func(o cOut) cErr {
		return C.sst_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), o)
	}, t)
}

// Select is t[..., index, ...] along dim, removing that dimension.
func (s *Scope) Select(t *Tensor, dim, index int64) *Tensor {
	return s.op("select", func(o cOut) cErr {
		return C.sst_select(t.h, C.int64_t(dim), C.int64_t(index), o)
	}, t)
}

// Unsqueeze inserts a dimension of size 1.
func (s *Scope) Unsqueeze(t *Tensor, dim int64) *Tensor {
	return s.op("unsqueeze", func(o cOut) cErr { return C.sst_unsqueeze(t.h, C.int64_t(dim), o) }, t)
}

// Cat concatenates along dim.
func (s *Scope) Cat(ts []*Tensor, dim int64) *Tensor {
	return s.listOp("cat", ts, func(hs cIn, n C.int64_t, o cOut) cErr {
		return C.sst_cat(hs, n, C.int64_t(dim), o)
	})
}

// Stack stacks along a new dim.
func (s *Scope) Stack(ts []*Tensor, dim int64) *Tensor {
	return s.listOp("stack", ts, func(hs cIn, n C.int64_t, o cOut) cErr {
		return C.sst_stack(hs, n, C.int64_t(dim), o)
	})
}

// IndexSelect picks entries index (int64, 1-D) along dim.
func (s *Scope) IndexSelect(t *Tensor, dim int64, index *Tensor) *Tensor {
	return s.op("index_select", func(o cOut) cErr {
		return C.sst_index_select(t.h, C.int64_t(dim), index.h, o)
	}, t, index)
}

// IndexCopy returns a copy of t with t[index[i]] along dim replaced by src[i].
func (s *Scope) IndexCopy(t *Tensor, dim int64, index, src *Tensor) *Tensor {
	return s.op("index_copy", func(o cOut) cErr {
		return C.sst_index_copy(t.h, C.int64_t(dim), index.h, src.h, o)
	}, t, index, src)
}

// Gather is torch.gather.
func (s *Scope) Gather(t *Tensor, dim int64, index *Tensor) *Tensor {
	return s.op("gather", func(o cOut) cErr {
		return C.sst_gather(t.h, C.int64_t(dim), index.h, o)
	}, t, index)
}

// MaskedFill sets entries where mask is true to v.
func (s *Scope) MaskedFill(t, mask *Tensor, v float64) *Tensor {
	return s.op("masked_fill", func(o cOut) cErr {
		return C.sst_masked_fill(t.h, mask.h, C.double(v), o)
	}, t, mask)
}

// Where is cond ? a : b.
func (s *Scope) Where(cond, a, b *Tensor) *Tensor {
	return s.op("where", func(o cOut) cErr { return C.sst_where(cond.h, a.h, b.h, o) }, cond, a, b)
}

// Softmax along dim.
func (s *Scope) Softmax(t *Tensor, dim int64) *Tensor {
	return s.op("softmax", func(o cOut) cErr { return C.sst_softmax(t.h, C.int64_t(dim), o) }, t)
}

// LogSoftmax along dim.
func (s *Scope) LogSoftmax(t *Tensor, dim int64) *Tensor {
	return s.op("log_softmax", func(o cOut) cErr {
		return C.sst_log_softmax(t.h, C.int64_t(dim), o)
	}, t)
}

// Argmax along dim (first maximal index).
func (s *Scope) Argmax(t *Tensor, dim int64, keepdim bool) *Tensor {
	return s.op("argmax", func(o cOut) cErr {
		return C.sst_argmax(t.h, C.int64_t(dim), cbool(keepdim), o)
	}, t)
}

// Sum along dim.
func (s *Scope) Sum(t *Tensor, dim int64, keepdim bool) *Tensor {
	return s.op("sum", func(o cOut) cErr {
		return C.sst_sum(t.h, C.int64_t(dim), cbool(keepdim), o)
	}, t)
}

// TopK returns the k largest values and their indices along dim. It makes two tensors, so it is
// written out rather than built on op, under the same rules.
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
	return s.op("linear", func(o cOut) cErr { return C.sst_linear(x.h, w.h, bias.handle(), o) }, x, w)
}

// LayerNorm over the last dimension.
func (s *Scope) LayerNorm(x, w, b *Tensor, eps float64) *Tensor {
	return s.op("layer_norm", func(o cOut) cErr {
		return C.sst_layer_norm(x.h, w.handle(), b.handle(), C.double(eps), o)
	}, x)
}

// RotaryGPTJ applies GPT-J's interleaved rotary embedding to the first rot dims of the last axis.
func (s *Scope) RotaryGPTJ(x, sin, cos *Tensor, rot int64) *Tensor {
	return s.op("rotary_gptj", func(o cOut) cErr {
		return C.sst_rotary_gptj(x.h, sin.h, cos.h, C.int64_t(rot), o)
	}, x, sin, cos)
}

// RMSNorm is HF's LlamaRMSNorm over the last dimension: x / sqrt(mean(x²) + eps) in float32,
// cast back to x's dtype, then times w (w may be nil).
func (s *Scope) RMSNorm(x, w *Tensor, eps float64) *Tensor {
	return s.op("rms_norm", func(o cOut) cErr {
		return C.sst_rms_norm(x.h, w.handle(), C.double(eps), 0, o)
	}, x)
}

// RMSNormPlusOne is HF's GemmaRMSNorm: x / sqrt(mean(x²) + eps) · (1 + w), all in float32, then
// cast to x's dtype.
func (s *Scope) RMSNormPlusOne(x, w *Tensor, eps float64) *Tensor {
	return s.op("rms_norm", func(o cOut) cErr {
		return C.sst_rms_norm(x.h, w.handle(), C.double(eps), 1, o)
	}, x)
}

// RotaryHalf applies the NeoX / Llama rotary embedding (rotate_half) to the first rot dims of the
// last axis; sin, cos broadcast to (..., rot/2).
func (s *Scope) RotaryHalf(x, sin, cos *Tensor, rot int64) *Tensor {
	return s.op("rotary_half", func(o cOut) cErr {
		return C.sst_rotary_half(x.h, sin.h, cos.h, C.int64_t(rot), o)
	}, x, sin, cos)
}

// WindowMask is mask (nil: all allowed) restricted to a sliding window: (B, 1, Tq, Tk) bool, true
// where the key's position kpos (Bk, Tk) is within window-1 of the query's qpos (Bq, Tq), i.e.
// kpos > qpos - window, as HF's sliding_window_overlay.
func (s *Scope) WindowMask(mask, qpos, kpos *Tensor, window int64) *Tensor {
	return s.op("window_mask", func(o cOut) cErr {
		return C.sst_window_mask(mask.handle(), qpos.h, kpos.h, C.int64_t(window), o)
	}, qpos, kpos)
}

// CausalMask turns valid (B, T) into the (B, 1, T, T) boolean attention mask: key j is visible
// to query i when j <= i and key j is valid. Built on the tensor's device.
func (s *Scope) CausalMask(valid *Tensor) *Tensor {
	return s.op("causal_mask", func(o cOut) cErr { return C.sst_causal_mask(valid.h, o) }, valid)
}

// Attention: q (B, H, Tq, D), k/v (B, H, Tk, D), mask bool broadcastable to (B, H, Tq, Tk) with
// true = may attend, or nil. Scores in float32; output in v's dtype.
func (s *Scope) Attention(q, k, v, mask *Tensor) *Tensor {
	return s.op("attention", func(o cOut) cErr {
		return C.sst_attention(q.h, k.h, v.h, mask.handle(), o)
	}, q, k, v)
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
