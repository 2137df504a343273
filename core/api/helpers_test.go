package api

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/internal/testutil"
)

// The test models: random GPT-Js made by HF transformers (core/gptj/testdata/hf_gptj.py) with
// GPT-J's vocabulary size, so that the shared GPT-J tokenizer works with them.
const (
	tinySpec    = "tiny:16:2:2:4:50400:st:7"            // single safetensors file
	shardedSpec = "sharded:16:2:2:4:50400:st-sharded:7" // three shards + index
	binSpec     = "bin:16:2:2:4:50400:bin:7"            // PyTorch zip/pickle
)

// modelsEnv names the folder of the test models for a child test process (see runChild).
const modelsEnv = "SIMPLESCOPE_API_TEST_MODELS"

var (
	modelsOnce sync.Once
	modelsRoot string
	modelsErr  error
)

// models makes the test models once per test binary and returns the folder holding
// tiny/model, sharded/model and bin/model (each with the bundled GPT-J tokenizer files).
func models(t testing.TB) string {
	t.Helper()
	modelsOnce.Do(func() {
		if dir := os.Getenv(modelsEnv); dir != "" { // a child test process reuses its parent's models
			modelsRoot = dir
			return
		}
		modelsRoot, modelsErr = os.MkdirTemp("", "api-models-")
		if modelsErr != nil {
			return
		}
		script := filepath.Join(testutil.RepoRoot(), "core", "gptj", "testdata", "hf_gptj.py")
		testutil.RunPython(t, script, modelsRoot, tinySpec, shardedSpec, binSpec)
		// the bundled GPT-J tokenizer files, as a HF model folder has them (tokenizer_config.json
		// names the BOS that prepend_bos adds)
		files, err := os.ReadDir(testutil.TokenizerDir())
		if modelsErr = err; err != nil {
			return
		}
		for _, spec := range []string{tinySpec, shardedSpec, binSpec} {
			for _, f := range files {
				dst := filepath.Join(modelsRoot, strings.Split(spec, ":")[0], "model", f.Name())
				if modelsErr = copyFile(filepath.Join(testutil.TokenizerDir(), f.Name()), dst); modelsErr != nil {
					return
				}
			}
		}
	})
	if modelsErr != nil {
		t.Fatalf("making the test models: %v", modelsErr)
	}
	return modelsRoot
}

// modelDir returns the folder of a test model: "tiny", "sharded" or "bin".
func modelDir(t testing.TB, name string) string {
	return filepath.Join(models(t), name, "model")
}

// copyModel copies a test model's folder into a fresh temporary folder, for tests that damage it.
func copyModel(t testing.TB, name string) string {
	t.Helper()
	src := modelDir(t, name)
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

var (
	sessOnce sync.Once
	sess     *Session
	sessErr  error
)

// shared returns one session on the tiny model for the whole test binary (never closed, like a
// notebook's model).
func shared(t testing.TB) *Session {
	t.Helper()
	dir := modelDir(t, "tiny")
	sessOnce.Do(func() { sess, sessErr = Open(dir, "cpu", "float32") })
	if sessErr != nil {
		t.Fatalf("Open(%s): %v", dir, sessErr)
	}
	return sess
}

func TestMain(m *testing.M) {
	code := m.Run()
	if modelsRoot != "" && os.Getenv(modelsEnv) == "" {
		os.RemoveAll(modelsRoot)
	}
	os.Exit(code)
}

// pack encodes a request as the Python binding does.
func pack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatalf("msgpack.Marshal(%v): %v", v, err)
	}
	return b
}

// call runs a method and decodes its result into a generic map.
func call(t testing.TB, s *Session, method string, req any) map[string]any {
	t.Helper()
	out, err := Call(context.Background(), s, method, pack(t, req), nil)
	if err != nil {
		t.Fatalf("%s: %v (status %d)", method, err, Status(err))
	}
	var res map[string]any
	if err := msgpack.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s: result is not a msgpack map: %v", method, err)
	}
	return res
}

// evalArrays returns, for each method of an evaluate result, its arrays' raw bytes keyed
// "method/array" (bit-exact comparison of two results).
func evalArrays(t testing.TB, res map[string]any) map[string][]byte {
	t.Helper()
	out, err := arraysOf(res)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// arraysOf is evalArrays without a testing.TB (for goroutines).
func arraysOf(res map[string]any) (map[string][]byte, error) {
	out := map[string][]byte{}
	ms, _ := res["methods"].([]any)
	if len(ms) == 0 {
		return nil, fmt.Errorf("evaluate result has no methods: %v", res)
	}
	for _, m := range ms {
		mm, _ := m.(map[string]any)
		arrays, _ := mm["arrays"].(map[string]any)
		if len(arrays) == 0 {
			return nil, fmt.Errorf("method %v has no arrays", mm["name"])
		}
		for k, a := range arrays {
			am, _ := a.(map[string]any)
			data, ok := am["data"].([]byte)
			if !ok {
				return nil, fmt.Errorf("method %v array %s has no data", mm["name"], k)
			}
			out[fmt.Sprintf("%v/%s", mm["name"], k)] = data
		}
	}
	return out, nil
}

// sameArrays reports the first difference between two evalArrays results ("" when equal).
func sameArrays(a, b map[string][]byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d arrays vs %d", len(a), len(b))
	}
	for k, x := range a {
		y := b[k]
		if len(x) != len(y) {
			return fmt.Sprintf("%s: %d bytes vs %d", k, len(x), len(y))
		}
		for i := range x {
			if x[i] != y[i] {
				return fmt.Sprintf("%s: first difference at byte %d (%d vs %d)", k, i, x[i], y[i])
			}
		}
	}
	return ""
}

// smallEval is the evaluate request the leak, stress and fault tests repeat: three prompts, the
// three built-in methods, every layer, random positions.
func smallEval(seed int) map[string]any {
	return map[string]any{
		"texts":       []string{"The cat sat on the mat.", "1135 -> 1135", "Hello, world! It's"},
		"prepend_bos": true,
		"methods":     []map[string]any{{"name": "logitlens"}, {"name": "patchscope"}, {"name": "simplescope"}},
		"positions":   "random",
		"seed":        seed,
	}
}

// childEnv marks a test process started by runChild.
const childEnv = "SIMPLESCOPE_API_TEST_CHILD"

// inChild reports whether this test binary was started by runChild.
func inChild() bool { return os.Getenv(childEnv) != "" }

// runChild runs the test named t.Name() again in a fresh process of this test binary, with the
// test models and extra environment, and returns its combined output and error.
func runChild(t *testing.T, env ...string) ([]byte, error) {
	t.Helper()
	root := models(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=1", modelsEnv + "=" + root}, env...)...)
	return cmd.CombinedOutput()
}

// sameArraysTol is sameArrays with a tolerance for the float32 arrays (surprisals): results
// computed with other batch sizes may round differently. Integer arrays must match exactly.
func sameArraysTol(a, b map[string][]byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d arrays vs %d", len(a), len(b))
	}
	for k, x := range a {
		y := b[k]
		if len(x) != len(y) {
			return fmt.Sprintf("%s: %d bytes vs %d", k, len(x), len(y))
		}
		if !strings.HasSuffix(k, "surprisal") {
			if d := sameArrays(map[string][]byte{k: x}, map[string][]byte{k: y}); d != "" {
				return d
			}
			continue
		}
		maxDiff, at := 0.0, -1
		for i := 0; i+4 <= len(x); i += 4 {
			u := float64(math.Float32frombits(binary.LittleEndian.Uint32(x[i:])))
			v := float64(math.Float32frombits(binary.LittleEndian.Uint32(y[i:])))
			if d := math.Abs(u - v); d > maxDiff || (math.IsNaN(u) != math.IsNaN(v)) {
				maxDiff, at = d, i/4
			}
		}
		if maxDiff > 1e-4 {
			return fmt.Sprintf("%s: max difference %g at element %d", k, maxDiff, at)
		}
	}
	return ""
}
