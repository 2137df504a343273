package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/torch"
)

// checkRegistry fails the test when it leaves tensors in the registry or handles alive. The shared
// session is opened first: it stays open.
func checkRegistry(t *testing.T) {
	t.Helper()
	shared(t)
	reg, live := RegisteredTensors(), torch.LiveTensors()
	t.Cleanup(func() {
		if got := RegisteredTensors(); got != reg {
			t.Errorf("registry holds %d tensors, %d before the test", got, reg)
		}
		if got := torch.LiveTensors(); got != live {
			t.Errorf("live tensors %d, %d before the test", got, live)
		}
	})
}

func f32Tensor(t *testing.T, v []float32, shape ...int64) *torch.Tensor {
	t.Helper()
	x, err := torch.FromSlice(v, shape, torch.Float32, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func dataPtr(t *testing.T, x *torch.Tensor) uint64 {
	t.Helper()
	p, _, err := x.DataPtr()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegistry(t *testing.T) {
	checkRegistry(t)
	reg := RegisteredTensors()
	a := RegisterTensor(f32Tensor(t, []float32{1, 2}, 2))
	b := RegisterTensor(f32Tensor(t, []float32{3}, 1))
	if a == 0 || b == 0 || a == b {
		t.Fatalf("ids %d, %d: want distinct non-zero ids", a, b)
	}
	if got := RegisteredTensors() - reg; got != 2 {
		t.Fatalf("%d registered, want 2", got)
	}
	x, err := TakeTensor(a)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := x.Float32s(); len(v) != 2 || v[1] != 2 {
		t.Fatalf("took %v", v)
	}
	x.Close()
	if _, err := TakeTensor(a); err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "unknown tensor handle") {
		t.Fatalf("second take: %v (status %d), want an input error", err, Status(err))
	}
	ReleaseTensor(b)
	ReleaseTensor(b)       // already gone: a no-op
	ReleaseTensor(1 << 62) // never issued: a no-op
	if got := RegisteredTensors() - reg; got != 0 {
		t.Fatalf("%d still registered", got)
	}
}

// TensorArg decodes both wire forms as the Python binding sends them, and names the argument in
// every refusal.
func TestTensorArgDecodeAndResolve(t *testing.T) {
	checkRegistry(t)
	s := shared(t)
	vals := []float32{1, 2, 3, 4, 5, 6}
	raw := new(bytes.Buffer)
	for _, v := range vals {
		_ = binary.Write(raw, binary.LittleEndian, math.Float32bits(v))
	}
	id := RegisterTensor(f32Tensor(t, vals, 2, 3))
	defer ReleaseTensor(id)
	regPtr := func() uint64 {
		x, err := borrowTensor(id)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		return dataPtr(t, x)
	}()

	type req struct {
		X TensorArg `msgpack:"x"`
	}
	cases := []struct {
		name    string
		wire    map[string]any
		dtype   torch.DType
		inPlace bool // resolves to the registered tensor itself
		want    []float32
		err     string // substring of the error; "" = success
	}{
		{"array float32", map[string]any{"dtype": "float32", "shape": []int64{2, 3}, "data": raw.Bytes()}, torch.Float32, false, vals, ""},
		{"handle float32", map[string]any{"tensor": id}, torch.Float32, true, vals, ""},
		{"handle with dtype and shape", map[string]any{"tensor": id, "dtype": "float32", "shape": []int64{2, 3}}, torch.Float32, true, vals, ""},
		{"handle to bfloat16", map[string]any{"tensor": id}, torch.BFloat16, false, vals, ""},
		{"handle as ints", map[string]any{"tensor": id}, torch.Int64, false, nil, "x: dtype float32 given, expected an integer tensor"},
		{"unknown handle", map[string]any{"tensor": 1 << 40}, torch.Float32, false, nil, "x: unknown tensor handle"},
		{"zero handle", map[string]any{"tensor": 0}, torch.Float32, false, nil, "x tensor handle 0 is not a valid id"},
		{"both forms", map[string]any{"tensor": id, "data": raw.Bytes()}, torch.Float32, false, nil, "x has both"},
		{"neither form", map[string]any{"shape": []int64{2}}, torch.Float32, false, nil, "x is neither"},
		{"short data", map[string]any{"dtype": "float32", "shape": []int64{2, 4}, "data": raw.Bytes()}, torch.Float32, false, nil, "x: 24 bytes of data for shape [2 4]"},
		{"unknown dtype", map[string]any{"dtype": "complex64", "shape": []int64{3}, "data": raw.Bytes()}, torch.Float32, false, nil, `x: array dtype "complex64" not supported`},
		{"int array as float", map[string]any{"dtype": "int32", "shape": []int64{6}, "data": raw.Bytes()}, torch.Float32, false, nil, "x: dtype int32 given, expected a floating-point tensor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r req
			if err := decode(pack(t, map[string]any{"x": c.wire}), &r); err != nil {
				t.Fatalf("decode: %v", err)
			}
			x, err := s.tensorArg(r.X, "x", c.dtype)
			if c.err != "" {
				if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v (status %d), want an input error containing %q", err, Status(err), c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			ptr, contig, _ := x.DataPtr()
			if !contig || x.DType() != c.dtype || x.Device() != s.Model.Device {
				t.Fatalf("resolved to %v on %v, contiguous %v", x.DType(), x.Device(), contig)
			}
			if (ptr == regPtr) != c.inPlace {
				t.Fatalf("shares the registered tensor's memory: %v, want %v", ptr == regPtr, c.inPlace)
			}
			if err := checkShape("x", x, 2, -1); err != nil {
				t.Fatal(err)
			}
			if got, _ := x.Float32s(); len(got) != len(c.want) || got[5] != c.want[5] {
				t.Fatalf("values %v, want %v", got, c.want)
			}
		})
	}
	if RegisteredTensors() == 0 {
		t.Fatal("resolving a handle consumed it; handles in requests are borrowed")
	}
}

func TestTensorArgNonContiguousAndShape(t *testing.T) {
	checkRegistry(t)
	s := shared(t)
	x := f32Tensor(t, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	sc := torch.NewScope()
	xt := sc.Keep(sc.Transpose(x, 0, 1)) // (3, 2) view, not contiguous
	sc.Close()
	x.Close()
	id := RegisterTensor(xt)
	defer ReleaseTensor(id)
	y, err := s.tensorArg(HandleArg(id), "vecs", torch.Float32)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	if _, contig, _ := y.DataPtr(); !contig {
		t.Fatal("a transposed tensor was not made contiguous")
	}
	if v, _ := y.Float32s(); v[1] != 4 || v[2] != 2 {
		t.Fatalf("values %v, want the transpose 1 4 2 5 3 6", v)
	}
	err = checkShape("vecs", y, -1, int64(s.Model.Cfg.NEmbd))
	if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), fmt.Sprintf("vecs: shape [3 2], expected [* %d]", s.Model.Cfg.NEmbd)) {
		t.Fatalf("checkShape: %v", err)
	}
}

// run_with_cache answers tensor handles whose tensors equal the msgpack-bin path's arrays; token
// ids given as a tensor handle or an Array give the same result as lists.
func TestRunWithCacheTensors(t *testing.T) {
	checkRegistry(t)
	s := shared(t)
	ids := []int64{50256, 464, 2068, 7586, 21831}
	lists := map[string]any{"tokens": [][]int64{ids}, "names": []string{"hook_embed", "blocks.1.hook_resid_post"}}
	want := call(t, s, "run_with_cache", map[string]any{"tokens": lists["tokens"], "names": lists["names"], "arrays": true})

	tokID := RegisterTensor(func() *torch.Tensor {
		x, err := torch.FromSlice(ids, []int64{1, int64(len(ids))}, torch.Int64, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}())
	defer ReleaseTensor(tokID)
	forms := map[string]any{
		"lists":  lists["tokens"],
		"handle": map[string]any{"tensor": tokID},
		"array":  I64Array(ids, int64(len(ids))),
	}
	for name, tokens := range forms {
		t.Run(name, func(t *testing.T) {
			out, err := Call(context.Background(), s, "run_with_cache", pack(t, map[string]any{"tokens": tokens, "names": lists["names"]}), nil)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				Logits TensorRef            `msgpack:"logits"`
				Cache  map[string]TensorRef `msgpack:"cache"`
			}
			if err := msgpack.Unmarshal(out, &res); err != nil {
				t.Fatal(err)
			}
			if len(res.Cache) != 2 {
				t.Fatalf("cache has %d entries, want 2", len(res.Cache))
			}
			refs := map[string]TensorRef{"logits": res.Logits}
			for k, v := range res.Cache {
				refs["cache/"+k] = v
			}
			for k, ref := range refs {
				x, err := TakeTensor(ref.Tensor)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				got, err := x.Float32s()
				x.Close()
				if err != nil {
					t.Fatal(err)
				}
				var arr map[string]any
				if k == "logits" {
					arr = want["logits"].(map[string]any)
				} else {
					arr = want["cache"].(map[string]any)[strings.TrimPrefix(k, "cache/")].(map[string]any)
				}
				data := arr["data"].([]byte)
				if ref.DType != "float32" || len(data) != 4*len(got) {
					t.Fatalf("%s: %s with %d values, arrays path has %d bytes", k, ref.DType, len(got), len(data))
				}
				// two forward passes: equal up to GEMM rounding, which depends on the serving OS
				// thread's OpenMP thread count
				for i, v := range got {
					w := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
					if d := math.Abs(float64(v - w)); !(d <= 1e-5) {
						t.Fatalf("%s: value %d is %v, the arrays path has %v", k, i, v, w)
					}
				}
			}
		})
	}
	// a float tensor is not token ids
	fid := RegisterTensor(f32Tensor(t, []float32{1, 2}, 1, 2))
	defer ReleaseTensor(fid)
	_, err := Call(context.Background(), s, "run_with_cache", pack(t, map[string]any{"tokens": map[string]any{"tensor": fid}}), nil)
	if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "tokens: dtype float32 given, expected an integer tensor") {
		t.Fatalf("float tokens: %v", err)
	}
}

// A result nobody reads gives its tensors back (a background run freed before its result was
// taken).
func TestReleaseResultTensors(t *testing.T) {
	checkRegistry(t)
	out, err := Call(context.Background(), shared(t), "run_with_cache", pack(t, map[string]any{"tokens": [][]int{{1, 2, 3}}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ReleaseResultTensors(out)
}

// debug.tensor_info reports the registered tensor's own data pointer (no copy is made to answer).
func TestDebugTensorInfo(t *testing.T) {
	checkRegistry(t)
	x := f32Tensor(t, []float32{1, 2, 3}, 3)
	ptr := dataPtr(t, x)
	id := RegisterTensor(x)
	defer ReleaseTensor(id)
	res := call(t, shared(t), "debug.tensor_info", map[string]any{"tensor": id})
	if got, _ := res["data_ptr"].(uint64); got != ptr {
		t.Fatalf("data_ptr %v, tensor at %#x", res["data_ptr"], ptr)
	}
	if res["dtype"] != "float32" || res["device"] != "cpu" || res["contiguous"] != true {
		t.Fatalf("info %v", res)
	}
}
