package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// DLPack exchange: tensors cross the C boundary as DLPack DLManagedTensors that share storage,
// never as copies (docs/tensors.md).

// ImportDLPack wraps a DLManagedTensor (a C `struct DLManagedTensor *`) in a tensor handle
// sharing its storage. On success the returned tensor owns p: p's deleter runs when the last
// ATen reference to the storage goes. On failure p is untouched and still the caller's.
func ImportDLPack(p unsafe.Pointer) (*Tensor, error) {
	if p == nil {
		return nil, errors.New("torch: NULL DLManagedTensor")
	}
	var out *C.sst_tensor
	if err := check(C.sst_from_dlpack((*C.struct_DLManagedTensor)(p), &out)); err != nil {
		return nil, err
	}
	return wrap(out), nil
}

// ExportDLPack returns a new DLManagedTensor sharing t's storage. t stays owned by the caller
// (closing it does not invalidate the export); the consumer calls the DLManagedTensor's deleter
// once. Until then the export counts in LiveTensors.
func ExportDLPack(t *Tensor) (unsafe.Pointer, error) {
	if t == nil || t.h == nil {
		return nil, errors.New("torch: use of a nil or closed tensor")
	}
	var out *C.struct_DLManagedTensor
	if err := check(C.sst_to_dlpack(t.h, &out)); err != nil {
		return nil, err
	}
	return unsafe.Pointer(out), nil
}

// Alias returns a second handle on the same ATen tensor (no copy); close both.
func (t *Tensor) Alias() (*Tensor, error) {
	if t == nil || t.h == nil {
		return nil, errors.New("torch: use of a nil or closed tensor")
	}
	var out *C.sst_tensor
	if err := check(C.sst_alias(t.h, &out)); err != nil {
		return nil, err
	}
	return wrap(out), nil
}

// DataPtr is the address of the tensor's first element (storage offset included) and whether
// its layout is contiguous: for checks that no copy was made.
func (t *Tensor) DataPtr() (ptr uint64, contiguous bool, err error) {
	if t == nil || t.h == nil {
		return 0, false, errors.New("torch: use of a nil or closed tensor")
	}
	var p C.uint64_t
	var c C.int
	if err := check(C.sst_data_info(t.h, &p, &c)); err != nil {
		return 0, false, err
	}
	return uint64(p), c != 0, nil
}

// ToContiguous returns a contiguous tensor of dtype dt on dev: a new handle on t itself when it
// already is one (no copy), otherwise one copy. The caller closes the result (and still owns t).
func (t *Tensor) ToContiguous(dt DType, dev Device) (*Tensor, error) {
	if t == nil || t.h == nil {
		return nil, errors.New("torch: use of a nil or closed tensor")
	}
	var out *C.sst_tensor
	if err := check(C.sst_to_contiguous(t.h, C.int(dt), C.int(dev.Type), C.int64_t(dev.Index), &out)); err != nil {
		return nil, err
	}
	return wrap(out), nil
}
