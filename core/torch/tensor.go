package torch

/*
#cgo CFLAGS: -I${SRCDIR}/csrc
#cgo LDFLAGS: -L${SRCDIR}/../../build/lib -lsimplescope_shim -Wl,-rpath,${SRCDIR}/../../build/lib
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unsafe"
)

// DType is a tensor element type.
type DType int

// Element types (the codes of shim.h).
const (
	Float32  DType = C.SST_F32
	Float16  DType = C.SST_F16
	BFloat16 DType = C.SST_BF16
	Int64    DType = C.SST_I64
	Float64  DType = C.SST_F64
	Int32    DType = C.SST_I32
	Uint8    DType = C.SST_U8
	Bool     DType = C.SST_BOOL
	Int8     DType = C.SST_I8
	Int16    DType = C.SST_I16
)

var dtypeNames = map[DType]string{
	Float32: "float32", Float16: "float16", BFloat16: "bfloat16", Int64: "int64", Float64: "float64",
	Int32: "int32", Uint8: "uint8", Bool: "bool", Int8: "int8", Int16: "int16",
}

func (d DType) String() string {
	if n, ok := dtypeNames[d]; ok {
		return n
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// Size is the element size in bytes.
func (d DType) Size() int {
	switch d {
	case Float32, Int32:
		return 4
	case Float16, BFloat16, Int16:
		return 2
	case Int64, Float64:
		return 8
	case Uint8, Bool, Int8:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == Float32 || d == Float16 || d == BFloat16 || d == Float64 }

// ParseDType accepts float32/fp32/float, float16/fp16/half, bfloat16/bf16, int64, ...
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(strings.TrimPrefix(s, "torch.")) {
	case "float32", "fp32", "float", "f32":
		return Float32, nil
	case "float16", "fp16", "half", "f16":
		return Float16, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	case "float64", "double", "f64":
		return Float64, nil
	case "int64", "long", "i64":
		return Int64, nil
	case "int32", "int", "i32":
		return Int32, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want float32, float16 or bfloat16)", s)
}

// DeviceType is cpu or cuda.
type DeviceType int

// Device types.
const (
	DevCPU  DeviceType = C.SST_CPU
	DevCUDA DeviceType = C.SST_CUDA
)

// Device names a device: cpu, or cuda:N.
type Device struct {
	Type  DeviceType
	Index int
}

// CPU is the host device.
var CPU = Device{Type: DevCPU}

// CUDA returns cuda:i.
func CUDA(i int) Device { return Device{Type: DevCUDA, Index: i} }

func (d Device) String() string {
	if d.Type == DevCUDA {
		return "cuda:" + strconv.Itoa(d.Index)
	}
	return "cpu"
}

// ParseDevice accepts "cpu", "cuda" (= cuda:0) and "cuda:N". It does not check that the device
// exists; CheckDevice does.
func ParseDevice(s string) (Device, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch {
	case t == "cpu":
		return CPU, nil
	case t == "cuda":
		return CUDA(0), nil
	case strings.HasPrefix(t, "cuda:"):
		n, err := strconv.Atoi(t[5:])
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("unknown device %q (want cpu, cuda or cuda:N)", s)
		}
		return CUDA(n), nil
	}
	return Device{}, fmt.Errorf("unknown device %q (want cpu, cuda or cuda:N)", s)
}

// CheckDevice returns an error when d is a CUDA device that does not exist.
func CheckDevice(d Device) error {
	if d.Type == DevCPU {
		return nil
	}
	n, err := CUDADeviceCount()
	if err != nil {
		return err
	}
	if d.Index >= n {
		return fmt.Errorf("device %s does not exist (%d CUDA devices visible)", d, n)
	}
	return nil
}

// ErrOOM marks out-of-memory failures (errors.Is(err, ErrOOM)).
var ErrOOM = errors.New("out of memory")

// shimError is an error returned by the shim.
type shimError struct {
	msg string
	oom bool
}

func (e *shimError) Error() string { return e.msg }
func (e *shimError) Is(target error) bool {
	return target == ErrOOM && e.oom
}

// check converts a shim error (freeing it) into a Go error.
func check(e C.sst_error) error {
	if e == nil {
		return nil
	}
	msg := C.GoString(e)
	C.sst_free_error(e)
	oom := strings.HasPrefix(msg, "[oom] ")
	return &shimError{msg: "torch: " + strings.TrimPrefix(msg, "[oom] "), oom: oom}
}

// IsOOM reports whether err is an out-of-memory failure.
func IsOOM(err error) bool { return errors.Is(err, ErrOOM) }

// Tensor is an owned handle to an ATen tensor. Close it exactly once (Close is idempotent).
type Tensor struct {
	h *C.sst_tensor
}

func wrap(h *C.sst_tensor) *Tensor { return &Tensor{h: h} }

// Close frees the tensor. Safe on nil and on an already closed tensor.
func (t *Tensor) Close() {
	if t == nil || t.h == nil {
		return
	}
	C.sst_free(t.h)
	t.h = nil
}

// LiveTensors is the number of tensor handles alive in the process, plus DLPack exports whose
// deleter has not run yet (ExportDLPack).
func LiveTensors() int64 { return int64(C.sst_live_tensors()) }

func (t *Tensor) handle() *C.sst_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

type tensorInfo struct {
	dtype  DType
	shape  []int64
	device Device
}

func (t *Tensor) info() (tensorInfo, error) {
	if t == nil || t.h == nil {
		return tensorInfo{}, errors.New("torch: use of a nil or closed tensor")
	}
	var dt C.int
	var nd C.int64_t
	var shape [C.SST_MAX_DIMS]C.int64_t
	var devType C.int
	var devIndex C.int64_t
	if err := check(C.sst_info(t.h, &dt, &nd, &shape[0], &devType, &devIndex)); err != nil {
		return tensorInfo{}, err
	}
	s := make([]int64, int(nd))
	for i := range s {
		s[i] = int64(shape[i])
	}
	return tensorInfo{dtype: DType(dt), shape: s, device: Device{Type: DeviceType(devType), Index: int(devIndex)}}, nil
}

// Shape returns the tensor's sizes (nil for a closed tensor).
func (t *Tensor) Shape() []int64 {
	i, err := t.info()
	if err != nil {
		return nil
	}
	return i.shape
}

// DType returns the element type.
func (t *Tensor) DType() DType { i, _ := t.info(); return i.dtype }

// Device returns where the tensor lives.
func (t *Tensor) Device() Device { i, _ := t.info(); return i.device }

// Numel is the number of elements.
func (t *Tensor) Numel() int64 { return numel(t.Shape()) }

// CheckedNumel is the number of elements of shape, refused when a dimension is negative or the
// count exceeds limit (a shape from a request could otherwise wrap around int64 and describe far
// more memory than its data holds).
func CheckedNumel(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("torch: shape %v has a negative dimension", shape)
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("torch: shape %v has more elements than the %d given", shape, limit)
		}
		n *= d
	}
	return n, nil
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

func shapePtr(shape []int64) *C.int64_t {
	if len(shape) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&shape[0]))
}

// FromBytes copies raw little-endian host data of dtype src and the given shape into a new tensor
// of dtype dst on dev. The bytes are not retained.
func FromBytes(data []byte, src DType, shape []int64, dst DType, dev Device) (*Tensor, error) {
	if len(shape) > C.SST_MAX_DIMS {
		return nil, fmt.Errorf("torch: %d dimensions (max %d)", len(shape), C.SST_MAX_DIMS)
	}
	n, err := CheckedNumel(shape, int64(len(data)))
	if err != nil {
		return nil, err
	}
	if want := n * int64(src.Size()); int64(len(data)) != want {
		return nil, fmt.Errorf("torch: %d bytes given for shape %v of %s (%d bytes)", len(data), shape, src, want)
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	var out *C.sst_tensor
	err = check(C.sst_from_blob(p, shapePtr(shape), C.int64_t(len(shape)), C.int(src), C.int(dst), C.int(dev.Type), C.int64_t(dev.Index), &out))
	runtime.KeepAlive(data)
	if err != nil {
		return nil, err
	}
	return wrap(out), nil
}

// Element is a Go type with a tensor dtype.
type Element interface {
	~float32 | ~float64 | ~int64 | ~int32 | ~uint8 | ~int8 | ~int16
}

func dtypeOf[T Element]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	case int32:
		return Int32
	case uint8:
		return Uint8
	case int8:
		return Int8
	case int16:
		return Int16
	}
	return Float32
}

// FromSlice copies a Go slice into a new tensor of dtype dst on dev.
func FromSlice[T Element](data []T, shape []int64, dst DType, dev Device) (*Tensor, error) {
	src := dtypeOf[T]()
	if int64(len(data)) != numel(shape) {
		return nil, fmt.Errorf("torch: %d values given for shape %v", len(data), shape)
	}
	var b []byte
	if len(data) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), len(data)*src.Size())
	}
	t, err := FromBytes(b, src, shape, dst, dev)
	runtime.KeepAlive(data)
	return t, err
}

// Bytes copies the tensor to host memory as contiguous bytes of its own dtype.
func (t *Tensor) Bytes() ([]byte, error) {
	i, err := t.info()
	if err != nil {
		return nil, err
	}
	b := make([]byte, numel(i.shape)*int64(i.dtype.Size()))
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	if err := check(C.sst_copy_to_host(t.h, p, C.int64_t(len(b)))); err != nil {
		return nil, err
	}
	return b, nil
}

// ToSlice copies the tensor to the host as a []T, converting the dtype first when needed.
func ToSlice[T Element](t *Tensor) ([]T, error) {
	i, err := t.info()
	if err != nil {
		return nil, err
	}
	want := dtypeOf[T]()
	src := t
	if i.dtype != want || i.device != CPU {
		var out *C.sst_tensor
		if err := check(C.sst_to(t.h, C.int(want), C.SST_CPU, 0, &out)); err != nil {
			return nil, err
		}
		src = wrap(out)
		defer src.Close()
	}
	res := make([]T, numel(i.shape))
	var p unsafe.Pointer
	if len(res) > 0 {
		p = unsafe.Pointer(&res[0])
	}
	if err := check(C.sst_copy_to_host(src.h, p, C.int64_t(len(res)*want.Size()))); err != nil {
		return nil, err
	}
	return res, nil
}

// Float32s copies the tensor to the host as float32 values.
func (t *Tensor) Float32s() ([]float32, error) { return ToSlice[float32](t) }

// Int64s copies the tensor to the host as int64 values.
func (t *Tensor) Int64s() ([]int64, error) { return ToSlice[int64](t) }

// TorchVersion is the version of the libtorch the shim was built against.
func TorchVersion() (string, error) {
	var out *C.char
	if err := check(C.sst_torch_version(&out)); err != nil {
		return "", err
	}
	defer C.sst_free_error(out)
	return C.GoString(out), nil
}

// CUDADeviceCount is the number of visible CUDA devices (0 without CUDA).
func CUDADeviceCount() (int, error) {
	var n C.int64_t
	if err := check(C.sst_cuda_device_count(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// CUDAMemInfo returns free and total bytes of a CUDA device.
func CUDAMemInfo(dev int) (free, total int64, err error) {
	var f, tt C.int64_t
	if err := check(C.sst_cuda_mem_info(C.int64_t(dev), &f, &tt)); err != nil {
		return 0, 0, err
	}
	return int64(f), int64(tt), nil
}

// SetNumThreads sets ATen's intra-op thread count.
func SetNumThreads(n int) error { return check(C.sst_set_num_threads(C.int64_t(n))) }

// TF32 reports whether CUDA matmuls (cuBLAS) and cuDNN may use TF32: at::globalContext()'s
// process-wide flags, the ones torch.backends.cuda.matmul.allow_tf32 and
// torch.backends.cudnn.allow_tf32 read.
func TF32() (cublas, cudnn bool, err error) {
	var b, d C.int
	if err := check(C.sst_get_tf32(&b, &d)); err != nil {
		return false, false, err
	}
	return b != 0, d != 0, nil
}

// SetTF32 sets the flags TF32 reports (process-wide).
func SetTF32(cublas, cudnn bool) error {
	b, d := 0, 0
	if cublas {
		b = 1
	}
	if cudnn {
		d = 1
	}
	return check(C.sst_set_tf32(C.int(b), C.int(d)))
}

// NumThreads returns ATen's intra-op thread count.
func NumThreads() int {
	var n C.int64_t
	if check(C.sst_get_num_threads(&n)) != nil {
		return 0
	}
	return int(n)
}
