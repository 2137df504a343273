package api

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/core/weights"
)

// checkpointHandles registers every tensor of a test model's checkpoint (float32) and returns
// their handles by key.
func checkpointHandles(t *testing.T, dir string) map[string]TensorArg {
	t.Helper()
	st, err := weights.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]TensorArg{}
	for _, k := range st.Keys() {
		b, info, err := st.Bytes(k)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != weights.F32 {
			continue // HF's boolean attention-mask buffers
		}
		x, err := torch.FromBytes(b, torch.Float32, info.Shape, torch.Float32, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = HandleArg(RegisterTensor(x))
	}
	return out
}

// A model made from the checkpoint's tensors (OpenTensors, what ss.from_hf uses) answers exactly
// what the model loaded from the folder answers, and holds the tensors without a copy.
func TestOpenTensorsMatchesOpen(t *testing.T) {
	checkRegistry(t)
	ref := shared(t)
	dir := modelDir(t, "tiny")
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ts := checkpointHandles(t, dir)
	defer func() {
		for _, a := range ts {
			ReleaseTensor(a.Handle)
		}
	}()
	req := FromTensorsRequest{Config: cfg, Tensors: ts, DType: "float32", Device: "cpu", Tokenizer: dir, Name: "from tensors"}
	s, err := OpenTensors(pack(t, req))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// the weight is the registered tensor itself
	wte, err := borrowTensor(ts["transformer.wte.weight"].Handle)
	if err != nil {
		t.Fatal(err)
	}
	want := dataPtr(t, wte)
	wte.Close()
	if got := dataPtr(t, s.Model.WTE()); got != want {
		t.Fatalf("wte at %#x, the given tensor at %#x: copied", got, want)
	}
	run := func(s *Session) []byte {
		out, err := Call(context.Background(), s, "run_with_cache", pack(t, map[string]any{"tokens": [][]int{{50256, 464, 2068}}, "arrays": true}), nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// the same float32 weights: equal up to GEMM rounding (which depends on the serving OS
	// thread's OpenMP thread count)
	if d, at := cacheDiff(t, run(s), run(ref)); d > 1e-5 {
		t.Fatalf("run_with_cache: the model from tensors differs from the model from the folder by %g at %s", d, at)
	}
	if res := call(t, s, "config", nil); res["path"] != "from tensors" || res["has_tokenizer"] != true {
		t.Fatalf("config %v", res)
	}

	// refusals name the tensor
	bad := map[string]TensorArg{}
	for k, v := range ts {
		bad[k] = v
	}
	delete(bad, "transformer.h.1.mlp.fc_in.bias")
	req.Tensors = bad
	_, err = OpenTensors(pack(t, req))
	if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "tensor transformer.h.1.mlp.fc_in.bias not given") {
		t.Fatalf("missing tensor: %v", err)
	}
	bad["transformer.h.1.mlp.fc_in.bias"] = ts["transformer.ln_f.bias"]
	_, err = OpenTensors(pack(t, req))
	if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "transformer.h.1.mlp.fc_in.bias: shape [16], want [64]") {
		t.Fatalf("misshapen tensor: %v", err)
	}
}

// cacheDiff is the largest difference between two run_with_cache results in the msgpack-bin
// form, and where ("" when the arrays do not even match in name or size).
func cacheDiff(t *testing.T, a, b []byte) (float64, string) {
	t.Helper()
	arrays := func(out []byte) map[string][]byte {
		var r struct {
			Logits Array            `msgpack:"logits"`
			Cache  map[string]Array `msgpack:"cache"`
		}
		if err := msgpack.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		m := map[string][]byte{"logits": r.Logits.Data}
		for k, v := range r.Cache {
			m[k] = v.Data
		}
		return m
	}
	x, y := arrays(a), arrays(b)
	worst, at := 0.0, ""
	if len(x) != len(y) {
		return math.Inf(1), fmt.Sprintf("%d arrays vs %d", len(x), len(y))
	}
	for k, u := range x {
		v := y[k]
		if len(u) != len(v) {
			return math.Inf(1), fmt.Sprintf("%s: %d bytes vs %d", k, len(u), len(v))
		}
		for i := 0; i+4 <= len(u); i += 4 {
			p := float64(math.Float32frombits(binary.LittleEndian.Uint32(u[i:])))
			q := float64(math.Float32frombits(binary.LittleEndian.Uint32(v[i:])))
			if d := math.Abs(p - q); d > worst || math.IsNaN(d) {
				worst, at = d, fmt.Sprintf("%s[%d]", k, i/4)
			}
		}
	}
	return worst, at
}
