package main

// Tensors across the boundary without copies: DLPack export and import of the tensor handles that
// results carry as {"tensor": id, ...} and requests accept as {"tensor": id} (docs/tensors.md).

/*
#include <stdint.h>
struct DLManagedTensor;
*/
import "C"

import (
	"unsafe"

	"github.com/simplescope/simplescope/core/api"
)

//export ss_tensor_export
func ss_tensor_export(id C.uint64_t, out **C.struct_DLManagedTensor, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	if out == nil {
		setErr(errOut, "ss_tensor_export: NULL argument")
		return api.StatusInput
	}
	*out = nil
	p, err := api.ExportTensor(uint64(id))
	if err != nil {
		return fail(errOut, err)
	}
	*out = (*C.struct_DLManagedTensor)(p)
	return api.StatusOK
}

//export ss_tensor_import
func ss_tensor_import(t *C.struct_DLManagedTensor, id *C.uint64_t, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	if t == nil || id == nil {
		setErr(errOut, "ss_tensor_import: NULL argument")
		return api.StatusInput
	}
	n, err := api.ImportTensor(unsafe.Pointer(t))
	if err != nil {
		return fail(errOut, err)
	}
	*id = C.uint64_t(n)
	return api.StatusOK
}

//export ss_tensor_release
func ss_tensor_release(id C.uint64_t) {
	defer func() { _ = recover() }()
	api.ReleaseTensor(uint64(id))
}
