// Command capi is simplescope's C API, built with -buildmode=c-shared: //export functions only,
// each a thin wrapper over core/api that recovers any panic into an SS_ERR_PANIC error. See
// simplescope.h and docs/capi.md for the contract.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ss_model { uintptr_t h; };
struct ss_run { uintptr_t h; };
typedef struct ss_model ss_model;
typedef struct ss_run ss_run;
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/api"
	"github.com/simplescope/simplescope/core/torch"
)

func main() {}

// The API reads its switches (api.DebugPanicEnv) with the C library's getenv, at each call: a
// variable set after the library loaded (Python's os.environ, a test's monkeypatch.setenv) is
// invisible to os.Getenv, which reads the copy of the environment Go took when the library loaded.
func init() { api.Getenv = cGetenv }

func cGetenv(key string) string {
	k := C.CString(key)
	defer C.free(unsafe.Pointer(k))
	if v := C.getenv(k); v != nil {
		return C.GoString(v)
	}
	return ""
}

// Version is the library version.
const Version = "0.1.0"

// setErr stores msg in *err as a malloc'd C string.
func setErr(err **C.char, msg string) {
	if err != nil {
		*err = C.CString(msg)
	}
}

// fail records an error and returns its status.
func fail(errOut **C.char, e error) C.int {
	setErr(errOut, e.Error())
	return C.int(api.Status(e))
}

// guard turns a panic into SS_ERR_PANIC with the panic value and a stack trace.
func guard(status *C.int, errOut **C.char) {
	if r := recover(); r != nil {
		setErr(errOut, fmt.Sprintf("simplescope internal error (Go panic): %v\n%s", r, debug.Stack()))
		*status = api.StatusPanic
	}
}

func putBytes(b []byte, out **C.uint8_t, outLen *C.size_t) {
	p := C.malloc(C.size_t(max(1, len(b))))
	if len(b) > 0 {
		C.memcpy(p, unsafe.Pointer(&b[0]), C.size_t(len(b)))
	}
	*out = (*C.uint8_t)(p)
	*outLen = C.size_t(len(b))
}

func goBytes(p *C.uint8_t, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	// unsafe.Slice + copy: C.GoBytes takes a C int and would wrap for requests of 2 GiB or more
	b := make([]byte, int(n))
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	return b
}

//export ss_free
func ss_free(p unsafe.Pointer) { C.free(p) }

//export ss_live_tensors
func ss_live_tensors() C.int64_t { return C.int64_t(torch.LiveTensors()) }

//export ss_backend_info
func ss_backend_info(out **C.uint8_t, outLen *C.size_t, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	tv, err := torch.TorchVersion()
	if err != nil {
		return fail(errOut, err)
	}
	n, err := torch.CUDADeviceCount()
	if err != nil {
		return fail(errOut, err)
	}
	b, err := msgpack.Marshal(map[string]any{
		"version": Version, "torch_version": tv, "cuda_device_count": n, "num_threads": torch.NumThreads(),
	})
	if err != nil {
		return fail(errOut, err)
	}
	putBytes(b, out, outLen)
	return api.StatusOK
}

//export ss_model_load
func ss_model_load(path, device, dtype *C.char, out **C.ss_model, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	if path == nil || device == nil || dtype == nil || out == nil {
		setErr(errOut, "ss_model_load: NULL argument")
		return api.StatusInput
	}
	s, err := api.Open(C.GoString(path), C.GoString(device), C.GoString(dtype))
	if err != nil {
		return fail(errOut, err)
	}
	m := (*C.ss_model)(C.malloc(C.size_t(unsafe.Sizeof(C.ss_model{}))))
	m.h = C.uintptr_t(cgo.NewHandle(s))
	*out = m
	return api.StatusOK
}

func session(m *C.ss_model) *api.Session {
	if m == nil || m.h == 0 {
		return nil
	}
	return cgo.Handle(m.h).Value().(*api.Session)
}

//export ss_model_free
func ss_model_free(m *C.ss_model) {
	defer func() { _ = recover() }()
	if m == nil || m.h == 0 {
		return
	}
	h := cgo.Handle(m.h)
	h.Value().(*api.Session).Close()
	h.Delete()
	m.h = 0
	C.free(unsafe.Pointer(m))
}

//export ss_call
func ss_call(m *C.ss_model, method *C.char, req *C.uint8_t, reqLen C.size_t, out **C.uint8_t, outLen *C.size_t, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	if method == nil || out == nil || outLen == nil {
		setErr(errOut, "ss_call: NULL argument")
		return api.StatusInput
	}
	b, err := api.Call(context.Background(), session(m), C.GoString(method), goBytes(req, reqLen), nil)
	if err != nil {
		return fail(errOut, err)
	}
	putBytes(b, out, outLen)
	return api.StatusOK
}

// run is a background call.
type run struct {
	cancel      context.CancelFunc
	done, total atomic.Int64
	finished    atomic.Bool
	wait        sync.WaitGroup
	result      []byte
	err         error
	taken       atomic.Bool
}

//export ss_run_start
func ss_run_start(m *C.ss_model, method *C.char, req *C.uint8_t, reqLen C.size_t, out **C.ss_run, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	if method == nil || out == nil {
		setErr(errOut, "ss_run_start: NULL argument")
		return api.StatusInput
	}
	s := session(m)
	name := C.GoString(method)
	body := goBytes(req, reqLen)
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel}
	r.wait.Add(1)
	go func() {
		// One OS thread for the whole run: OpenMP keeps a worker pool per calling thread, so a
		// goroutine hopping between threads would create (and spin) several pools.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer r.wait.Done()
		defer r.finished.Store(true)
		defer func() {
			if p := recover(); p != nil {
				r.err = &panicError{fmt.Sprintf("simplescope internal error (Go panic): %v\n%s", p, debug.Stack())}
			}
		}()
		r.result, r.err = api.Call(ctx, s, name, body, func(done, total int64) {
			r.done.Store(done)
			r.total.Store(total)
		})
	}()
	h := (*C.ss_run)(C.malloc(C.size_t(unsafe.Sizeof(C.ss_run{}))))
	h.h = C.uintptr_t(cgo.NewHandle(r))
	*out = h
	return api.StatusOK
}

type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

func getRun(h *C.ss_run) *run {
	if h == nil || h.h == 0 {
		return nil
	}
	return cgo.Handle(h.h).Value().(*run)
}

//export ss_run_poll
func ss_run_poll(h *C.ss_run, done, total *C.int64_t, finished *C.int) (status C.int) {
	defer guard(&status, nil)
	r := getRun(h)
	if r == nil {
		return api.StatusInput
	}
	if done != nil {
		*done = C.int64_t(r.done.Load())
	}
	if total != nil {
		*total = C.int64_t(r.total.Load())
	}
	if finished != nil {
		*finished = 0
		if r.finished.Load() {
			*finished = 1
		}
	}
	return api.StatusOK
}

//export ss_run_cancel
func ss_run_cancel(h *C.ss_run) {
	defer func() { _ = recover() }() // a stale handle must not take the process down
	if r := getRun(h); r != nil {
		r.cancel()
	}
}

//export ss_run_wait
func ss_run_wait(h *C.ss_run, out **C.uint8_t, outLen *C.size_t, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	r := getRun(h)
	if r == nil || out == nil || outLen == nil {
		setErr(errOut, "ss_run_wait: NULL argument")
		return api.StatusInput
	}
	r.wait.Wait()
	if !r.taken.CompareAndSwap(false, true) {
		setErr(errOut, "ss_run_wait: result already taken")
		return api.StatusInput
	}
	if r.err != nil {
		if _, ok := r.err.(*panicError); ok {
			setErr(errOut, r.err.Error())
			return api.StatusPanic
		}
		return fail(errOut, r.err)
	}
	putBytes(r.result, out, outLen)
	r.result = nil
	return api.StatusOK
}

//export ss_run_free
func ss_run_free(h *C.ss_run) {
	defer func() { _ = recover() }()
	r := getRun(h)
	if r == nil {
		return
	}
	r.cancel()
	r.wait.Wait()
	if r.taken.CompareAndSwap(false, true) && r.err == nil {
		api.ReleaseResultTensors(r.result) // nobody will export the result's tensors
		r.result = nil
	}
	cgo.Handle(h.h).Delete()
	h.h = 0
	C.free(unsafe.Pointer(h))
}

// ss_model_from_tensors makes a model whose weights are tensors the caller imported with
// ss_tensor_import (ss.from_hf): msgpack {"config": config.json bytes, "tensors": {checkpoint key:
// {"tensor": id}}, "dtype", "device", "tokenizer": folder or "", "name"}. Weights with the model's
// dtype and device are shared, not copied; the caller may release its handles right after.
//
//export ss_model_from_tensors
func ss_model_from_tensors(req *C.uint8_t, reqLen C.size_t, out **C.ss_model, errOut **C.char) (status C.int) {
	defer guard(&status, errOut)
	if out == nil {
		setErr(errOut, "ss_model_from_tensors: NULL argument")
		return api.StatusInput
	}
	s, err := api.OpenTensors(goBytes(req, reqLen))
	if err != nil {
		return fail(errOut, err)
	}
	m := (*C.ss_model)(C.malloc(C.size_t(unsafe.Sizeof(C.ss_model{}))))
	m.h = C.uintptr_t(cgo.NewHandle(s))
	*out = m
	return api.StatusOK
}
