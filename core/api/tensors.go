package api

import (
	"context"
	"fmt"
	"github.com/simplescope/simplescope/core/errs"
	"reflect"
	"strings"
	"sync"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/torch"
)

// Tensors that cross the C boundary without copies (docs/tensors.md).
//
// A process-wide registry holds tensors handed across the boundary under uint64 ids (never 0):
//   - results: a handler puts TensorOut(t) anywhere in its result value; t is registered and the
//     caller receives {"tensor": id, "dtype": ..., "shape": [...]}, then exports the id as a DLPack
//     tensor (ss_tensor_export) or releases it (ss_tensor_release);
//   - requests: the caller imports a DLPack tensor (ss_tensor_import) and passes {"tensor": id}
//     where the method takes a TensorArg; the handler borrows it (the entry stays) and the caller
//     releases the id after the call. A TensorArg also accepts the inline Array form
//     {"dtype", "shape", "data": bin}.

var registry = struct {
	sync.Mutex
	m    map[uint64]*torch.Tensor
	next uint64
}{m: map[uint64]*torch.Tensor{}}

// RegisterTensor puts t in the registry, which owns it from now on, and returns its id.
func RegisterTensor(t *torch.Tensor) uint64 {
	registry.Lock()
	defer registry.Unlock()
	registry.next++
	registry.m[registry.next] = t
	return registry.next
}

// TakeTensor removes a tensor from the registry; the caller owns it (and closes it).
func TakeTensor(id uint64) (*torch.Tensor, error) {
	registry.Lock()
	defer registry.Unlock()
	t, ok := registry.m[id]
	if !ok {
		return nil, unknownHandle(id)
	}
	delete(registry.m, id)
	return t, nil
}

// ReleaseTensor frees a registered tensor; an unknown id is a no-op.
func ReleaseTensor(id uint64) {
	registry.Lock()
	t, ok := registry.m[id]
	delete(registry.m, id)
	registry.Unlock()
	if ok {
		t.Close()
	}
}

// RegisteredTensors is the number of tensors in the registry (for leak checks).
func RegisteredTensors() int {
	registry.Lock()
	defer registry.Unlock()
	return len(registry.m)
}

// borrowTensor returns a new handle on a registered tensor (no copy); the entry stays, and the
// caller closes the handle. Holding the lock while aliasing means a concurrent release cannot
// free the tensor in between.
func borrowTensor(id uint64) (*torch.Tensor, error) {
	registry.Lock()
	defer registry.Unlock()
	t, ok := registry.m[id]
	if !ok {
		return nil, unknownHandle(id)
	}
	return t.Alias()
}

func unknownHandle(id uint64) error {
	return errs.Input("unknown tensor handle %d (never issued, already exported or released)", id)
}

// ExportTensor takes tensor id out of the registry and returns a DLManagedTensor (C
// `struct DLManagedTensor *`) sharing its storage; the caller calls its deleter once. The id is
// consumed whether or not the export succeeds.
func ExportTensor(id uint64) (unsafe.Pointer, error) {
	t, err := TakeTensor(id)
	if err != nil {
		return nil, err
	}
	defer t.Close() // the export holds its own reference
	return torch.ExportDLPack(t)
}

// ImportTensor registers a DLManagedTensor (C `struct DLManagedTensor *`) without copying it.
// On success the registry owns p (its deleter runs when the entry is freed and no other
// reference to the storage remains); on failure p is still the caller's.
func ImportTensor(p unsafe.Pointer) (uint64, error) {
	t, err := torch.ImportDLPack(p)
	if err != nil {
		if torch.IsOOM(err) {
			return 0, err
		}
		return 0, errs.AsInput(err)
	}
	return RegisterTensor(t), nil
}

// TensorRef is a tensor in a result: msgpack {"tensor": id, "dtype": ..., "shape": [...]}.
type TensorRef struct {
	Tensor uint64  `msgpack:"tensor"`
	DType  string  `msgpack:"dtype"`
	Shape  []int64 `msgpack:"shape"`
}

// TensorOut registers t (the registry owns it from now on) and returns its reference for a
// result. Call it last, once nothing can fail: a handler that returns an error after TensorOut
// leaves the tensor in the registry.
func TensorOut(t *torch.Tensor) TensorRef {
	ref := TensorRef{DType: t.DType().String(), Shape: t.Shape()}
	ref.Tensor = RegisterTensor(t)
	return ref
}

// ReleaseResultTensors releases every {"tensor": id, ...} reference in a msgpack result nobody
// will read (a background run freed before its result was taken).
func ReleaseResultTensors(result []byte) {
	var v any
	if msgpack.Unmarshal(result, &v) != nil {
		return
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if id, ok := refID(x); ok {
				ReleaseTensor(id)
				return
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
}

// refID recognises a TensorRef map: a "tensor" id and nothing but dtype and shape beside it.
func refID(m map[string]any) (uint64, bool) {
	raw, ok := m["tensor"]
	if !ok {
		return 0, false
	}
	for k := range m {
		if k != "tensor" && k != "dtype" && k != "shape" {
			return 0, false
		}
	}
	v := reflect.ValueOf(raw)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return uint64(v.Int()), v.Int() > 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint(), v.Uint() > 0
	}
	return 0, false
}

// TensorArg is a tensor argument of a request. It decodes from either form:
//
//	{"dtype": "float32", "shape": [...], "data": bin}   inline bytes (little-endian), copied
//	{"tensor": id}                                      a registered tensor, used without a copy
//
// Resolve it with Session.tensorArg.
type TensorArg struct {
	Handle uint64 // the registry id when given as {"tensor": id}
	Array  *Array // the inline form
	bad    string // a structural problem, reported with the argument's name
}

// HandleArg is a TensorArg naming a registered tensor.
func HandleArg(id uint64) TensorArg { return TensorArg{Handle: id} }

// ArrayArg is a TensorArg holding inline bytes.
func ArrayArg(a Array) TensorArg { return TensorArg{Array: &a} }

// IsSet reports whether the argument was given.
func (a TensorArg) IsSet() bool { return a.Handle != 0 || a.Array != nil || a.bad != "" }

// DecodeMsgpack implements msgpack.CustomDecoder.
func (a *TensorArg) DecodeMsgpack(dec *msgpack.Decoder) error {
	*a = TensorArg{}
	var m struct {
		Tensor *int64  `msgpack:"tensor"`
		DType  *string `msgpack:"dtype"`
		Shape  []int64 `msgpack:"shape"`
		Data   *[]byte `msgpack:"data"`
	}
	if err := dec.Decode(&m); err != nil {
		return err
	}
	switch {
	case m.Tensor != nil && m.Data != nil:
		a.bad = "has both a \"tensor\" handle and inline \"data\"; give one"
	case m.Tensor != nil:
		if *m.Tensor <= 0 {
			a.bad = fmt.Sprintf("tensor handle %d is not a valid id", *m.Tensor)
		} else {
			a.Handle = uint64(*m.Tensor)
		}
	case m.Data != nil || m.DType != nil:
		arr := Array{Shape: m.Shape}
		if m.DType != nil {
			arr.DType = *m.DType
		}
		if m.Data != nil {
			arr.Data = *m.Data
		}
		a.Array = &arr
	default:
		a.bad = `is neither a tensor handle {"tensor": id} nor an array {"dtype", "shape", "data"}`
	}
	return nil
}

// EncodeMsgpack implements msgpack.CustomEncoder (Go callers and tests).
func (a TensorArg) EncodeMsgpack(enc *msgpack.Encoder) error {
	if a.Array != nil {
		return enc.Encode(a.Array)
	}
	return enc.Encode(map[string]uint64{"tensor": a.Handle})
}

var arrayDTypes = map[string]torch.DType{
	"float32": torch.Float32, "float16": torch.Float16, "bfloat16": torch.BFloat16,
	"int64": torch.Int64, "int32": torch.Int32,
}

func kindName(d torch.DType) string {
	if d.IsFloat() {
		return "a floating-point tensor (float32, float16 or bfloat16)"
	}
	return "an integer tensor (int64 or int32)"
}

// compatible reports whether a tensor of dtype got may be converted to want: floating to
// floating, integer to integer (never silently rounding floats or turning ints into floats).
func compatible(got, want torch.DType) bool {
	if got == torch.Bool {
		return false
	}
	return got.IsFloat() == want.IsFloat()
}

// tensorArg resolves a tensor argument to a contiguous tensor of dtype on the model's device.
// A handle whose tensor already has that dtype, device and layout is used in place (no copy);
// otherwise it is converted once (CPU memory goes to the model's device; a tensor on another
// CUDA device, or of the wrong kind, is refused). The caller closes the result; the registry
// entry stays (the caller of the API releases it). Errors name the argument.
func (s *Session) tensorArg(a TensorArg, name string, dtype torch.DType) (*torch.Tensor, error) {
	return resolveTensor(a, name, dtype, s.Model.Device)
}

// resolveTensor is tensorArg for a given device.
func resolveTensor(a TensorArg, name string, dtype torch.DType, dev torch.Device) (*torch.Tensor, error) {
	switch {
	case a.bad != "":
		return nil, errs.Input("%s %s", name, a.bad)
	case a.Array != nil:
		src, ok := arrayDTypes[a.Array.DType]
		if !ok {
			return nil, errs.Input("%s: array dtype %q not supported (want float32, float16, bfloat16, int64 or int32)", name, a.Array.DType)
		}
		if !compatible(src, dtype) {
			return nil, errs.Input("%s: dtype %s given, expected %s", name, src, kindName(dtype))
		}
		n := int64(1)
		for _, d := range a.Array.Shape {
			if d < 0 {
				return nil, errs.Input("%s: negative dimension in shape %v", name, a.Array.Shape)
			}
			n *= d
		}
		if want := n * int64(src.Size()); int64(len(a.Array.Data)) != want {
			return nil, errs.Input("%s: %d bytes of data for shape %v of %s (want %d)", name, len(a.Array.Data), a.Array.Shape, src, want)
		}
		t, err := torch.FromBytes(a.Array.Data, src, a.Array.Shape, dtype, dev)
		if err != nil {
			return nil, tensorErr(name, err)
		}
		return t, nil
	case a.Handle != 0:
		t, err := borrowTensor(a.Handle)
		if err != nil {
			return nil, errs.Input("%s: %v", name, err)
		}
		got, gdev := t.DType(), t.Device()
		if !compatible(got, dtype) {
			t.Close()
			return nil, errs.Input("%s: dtype %s given, expected %s", name, got, kindName(dtype))
		}
		if gdev != dev && gdev.Type != torch.DevCPU {
			t.Close()
			return nil, errs.Input("%s: tensor on %s, the model is on %s (move it with .to(%q))", name, gdev, dev, dev.String())
		}
		out, err := t.ToContiguous(dtype, dev) // t itself when nothing needs to change
		t.Close()
		if err != nil {
			return nil, tensorErr(name, err)
		}
		return out, nil
	}
	return nil, errs.Input("%s: missing", name)
}

func tensorErr(name string, err error) error {
	if torch.IsOOM(err) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return errs.Input("%s: %v", name, err)
}

// checkShape checks t's shape against want, where -1 matches any size.
func checkShape(name string, t *torch.Tensor, want ...int64) error {
	got := t.Shape()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = want[i] < 0 || want[i] == got[i]
	}
	if ok {
		return nil
	}
	w := make([]string, len(want))
	for i, d := range want {
		if d < 0 {
			w[i] = "*"
		} else {
			w[i] = fmt.Sprint(d)
		}
	}
	return errs.Input("%s: shape %v, expected [%s]", name, got, strings.Join(w, " "))
}

// Tokens is a batch of token ids: msgpack a list of lists (ragged, right-padded by the model) or
// a TensorArg of an integer [batch, pos] or [pos] tensor.
type Tokens struct {
	Lists  [][]int
	Tensor TensorArg
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (tk *Tokens) DecodeMsgpack(dec *msgpack.Decoder) error {
	*tk = Tokens{}
	c, err := dec.PeekCode()
	if err != nil {
		return err
	}
	if c == msgpcode.Nil {
		return dec.Skip()
	}
	if msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 {
		return dec.Decode(&tk.Tensor)
	}
	return dec.Decode(&tk.Lists)
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (tk Tokens) EncodeMsgpack(enc *msgpack.Encoder) error {
	if tk.Tensor.IsSet() {
		return enc.Encode(tk.Tensor)
	}
	return enc.Encode(tk.Lists)
}

// tokenLists returns the token id sequences of a Tokens argument. A tensor's ids are read to the
// host (the model checks them there); a [pos] tensor is one sequence.
func (s *Session) tokenLists(tk Tokens, name string) ([][]int, error) {
	if !tk.Tensor.IsSet() {
		return tk.Lists, nil
	}
	// resolved on the CPU: the ids are read on the host anyway
	var t *torch.Tensor
	var err error
	if a := tk.Tensor; a.Handle != 0 && a.bad == "" {
		if t, err = borrowTensor(a.Handle); err != nil {
			return nil, errs.Input("%s: %v", name, err)
		}
		if !compatible(t.DType(), torch.Int64) {
			d := t.DType()
			t.Close()
			return nil, errs.Input("%s: dtype %s given, expected %s", name, d, kindName(torch.Int64))
		}
	} else if t, err = resolveTensor(a, name, torch.Int64, torch.CPU); err != nil {
		return nil, err
	}
	defer t.Close()
	shape := t.Shape()
	var B, T int64
	switch len(shape) {
	case 1:
		B, T = 1, shape[0]
	case 2:
		B, T = shape[0], shape[1]
	default:
		return nil, errs.Input("%s: shape %v, expected [batch, pos] or [pos]", name, shape)
	}
	ids, err := t.Int64s()
	if err != nil {
		return nil, tensorErr(name, err)
	}
	out := make([][]int, B)
	for b := range out {
		out[b] = make([]int, T)
		for j := range out[b] {
			out[b][j] = int(ids[int64(b)*T+int64(j)])
		}
	}
	return out, nil
}

// cacheTensors is run_with_cache's result without copies: the forward pass's own logits
// (B, T, V) float32 and residuals (B, T, C) in the model's dtype, registered as they are. The
// tensors it hands over are removed from out, which closes the rest.
func cacheTensors(out *gptj.Output, layers map[int]bool, lengths []int64) map[string]any {
	cache := map[string]TensorRef{}
	for l := range layers {
		t := out.Resid[l]
		delete(out.Resid, l)
		cache[SiteName(l)] = TensorOut(t)
	}
	logits := out.Logits
	out.Logits = nil
	return map[string]any{
		"logits":  TensorOut(logits),
		"cache":   cache,
		"lengths": I64Array(lengths, int64(len(lengths))),
	}
}

// debug.tensor_info describes a registered tensor without taking it: {"tensor": id} ->
// data_ptr, contiguous, dtype, shape, device (tests use it to show that no copy was made).
func debugTensorInfo(_ *Session, _ context.Context, req []byte, _ func(int64, int64)) (any, error) {
	var r struct {
		Tensor uint64 `msgpack:"tensor"`
	}
	if err := decode(req, &r); err != nil {
		return nil, err
	}
	t, err := borrowTensor(r.Tensor)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	ptr, contig, err := t.DataPtr()
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"data_ptr": ptr, "contiguous": contig, "dtype": t.DType().String(), "shape": t.Shape(),
		"device": t.Device().String(), "registered": RegisteredTensors(),
	}, nil
}

func init() { handlers["debug.tensor_info"] = debugTensorInfo }
