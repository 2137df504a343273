package api

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/torch"
)

// stillUsable checks that the shared session still answers an evaluate request exactly as it
// did before the fault.
func stillUsable(t *testing.T, s *Session, want map[string][]byte) {
	t.Helper()
	if d := sameArrays(want, evalArrays(t, call(t, s, "evaluate", smallEval(7)))); d != "" {
		t.Fatalf("the loaded model's results changed after the fault: %s", d)
	}
}

// TestDamagedModelFiles loads damaged copies of the test models: each load must end in an error
// that names the damaged file, with a real status, no tensor left behind, and the model loaded
// before must keep answering exactly as before.
func TestDamagedModelFiles(t *testing.T) {
	s := shared(t)
	want := evalArrays(t, call(t, s, "evaluate", smallEval(7)))
	truncate := func(name string, frac float64) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, int64(frac*float64(st.Size()))); err != nil {
				t.Fatal(err)
			}
		}
	}
	overwrite := func(name string, off int64, data []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(data, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	hugeHeader := make([]byte, 8)
	binary.LittleEndian.PutUint64(hugeHeader, math.MaxUint64)
	tests := []struct {
		name   string
		model  string
		damage func(t *testing.T, dir string)
		want   string // the file the error must name
		status int    // 0 = any real error status
	}{
		{"safetensors truncated to half", "tiny", truncate("model.safetensors", 0.5), "model.safetensors", 0},
		{"safetensors truncated to 4 bytes", "tiny", truncate("model.safetensors", 0), "model.safetensors", 0},
		{"safetensors header length huge", "tiny", overwrite("model.safetensors", 0, hugeHeader), "model.safetensors", 0},
		{"safetensors header garbled", "tiny", overwrite("model.safetensors", 8, []byte("\x00\xff{[garbage")), "model.safetensors", 0},
		{"shard truncated", "sharded", truncate("model-00002-of-00003.safetensors", 0.3), "model-00002-of-00003.safetensors", 0},
		{"shard removed", "sharded", remove("model-00003-of-00003.safetensors"), "model-00003-of-00003.safetensors", StatusNotFound},
		{"index garbled", "sharded", overwrite("model.safetensors.index.json", 0, []byte("{\"weight_map\": [")), "model.safetensors.index.json", 0},
		{"bin truncated", "bin", truncate("pytorch_model.bin", 0.6), "pytorch_model.bin", 0},
		{"bin zip directory garbled", "bin", func(t *testing.T, dir string) {
			st, _ := os.Stat(filepath.Join(dir, "pytorch_model.bin"))
			overwrite("pytorch_model.bin", st.Size()-40, []byte("garbage garbage garbage"))(t, dir)
		}, "pytorch_model.bin", 0},
		{"config.json garbled", "tiny", overwrite("config.json", 0, []byte("{{{")), "config.json", 0},
		{"config.json removed", "tiny", remove("config.json"), "config.json", StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyModel(t, tc.model)
			tc.damage(t, dir)
			before := torch.LiveTensors()
			got, err := Open(dir, "cpu", "float32")
			if err == nil {
				got.Close()
				t.Fatalf("a model with %s loaded without error", tc.name)
			}
			t.Logf("error: %v", err)
			st := Status(err)
			if st == StatusOK || st == StatusPanic || (tc.status != 0 && st != tc.status) {
				t.Errorf("status %d, want %d (0 = any real error)", st, tc.status)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			if after := torch.LiveTensors(); after != before {
				t.Errorf("the failed load left tensors behind: %d -> %d", before, after)
			}
			stillUsable(t, s, want)
		})
	}
	t.Run("tokenizer.json garbled", func(t *testing.T) {
		dir := copyModel(t, "tiny")
		overwrite("tokenizer.json", 0, []byte("{{{"))(t, dir)
		got, err := Open(dir, "cpu", "float32")
		if err != nil {
			t.Fatalf("the weights are fine, the model should load: %v", err)
		}
		defer got.Close()
		_, err = Call(context.Background(), got, "tokenize", pack(t, map[string]any{"texts": []string{"a"}}), nil)
		if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "tokenizer.json") {
			t.Fatalf("tokenize with a broken tokenizer.json: %v (status %d), want an input error naming tokenizer.json", err, Status(err))
		}
		tokens := map[string]any{"tokens": [][]int{{1, 2, 3}}, "methods": []map[string]any{{"name": "logitlens"}}}
		call(t, got, "evaluate", tokens) // token prompts need no tokenizer
		stillUsable(t, s, want)
	})
}

// TestFilesRemovedDuringLoad removes the weight files of a sharded model while it loads, at a
// range of delays: each load either fails with an error naming a weight file or succeeds with
// a model that gives the same results as the intact one (a mapped file stays readable after
// it is unlinked). Either way no tensor is left behind.
func TestFilesRemovedDuringLoad(t *testing.T) {
	s := shared(t)
	ref, err := Open(modelDir(t, "sharded"), "cpu", "float32")
	if err != nil {
		t.Fatal(err)
	}
	want := evalArrays(t, call(t, ref, "evaluate", smallEval(7)))
	ref.Close()
	outcomes := map[string]int{}
	for _, delay := range []time.Duration{0, 50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond} {
		t.Run(fmt.Sprint(delay), func(t *testing.T) {
			dir := copyModel(t, "sharded")
			before := torch.LiveTensors()
			type result struct {
				s   *Session
				err error
			}
			done := make(chan result, 1)
			go func() {
				got, err := Open(dir, "cpu", "float32")
				done <- result{got, err}
			}()
			time.Sleep(delay)
			for i := 1; i <= 3; i++ {
				os.Remove(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00003.safetensors", i)))
			}
			r := <-done
			if r.err != nil {
				outcomes["error"]++
				st := Status(r.err)
				if st == StatusOK || st == StatusPanic || !strings.Contains(r.err.Error(), "model") {
					t.Errorf("error %q (status %d) is not a clear load error", r.err, st)
				}
			} else {
				outcomes["loaded"]++
				if d := sameArrays(want, evalArrays(t, call(t, r.s, "evaluate", smallEval(7)))); d != "" {
					t.Errorf("the model loaded while its files were removed gives other results: %s", d)
				}
				r.s.Close()
			}
			if after := torch.LiveTensors(); after != before {
				t.Errorf("live tensors %d -> %d", before, after)
			}
		})
	}
	t.Logf("outcomes: %v", outcomes)
	call(t, s, "config", nil)
}

// TestOOMDuringEvaluate runs an evaluation under an address-space cap (RLIMIT_AS) in a child
// process, so that the CPU allocator really fails: the engine must halve its batch and retry
// (oom_retries > 0) and give the uncapped results; with the cap lifted the model must still
// evaluate correctly.
func TestOOMDuringEvaluate(t *testing.T) {
	if !inChild() {
		out, err := runChild(t)
		t.Logf("child process:\n%s", out)
		if err != nil {
			t.Fatalf("child process: %v", err)
		}
		return
	}
	// One OS thread for the warm-up and the capped call: OpenMP keeps a worker pool per calling
	// thread, and creating a new pool under the cap fails inside libgomp (which aborts).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := shared(t)
	var texts []string
	for i := 0; i < 400; i++ {
		texts = append(texts, fmt.Sprintf("Prompt number %d says something.", i))
	}
	// One chunk of prompts, and patched rows grouped by (method, start layer): one group of 400 rows, whose
	// logits alone are 400 × 50400 × 4 B = 81 MB, more than the 40 MB the cap leaves.
	req := map[string]any{"texts": texts, "prepend_bos": true, "seed": 1, "patch_rows": 4096, "chunk_prompts": 4096, "layers": []int{0},
		"methods": []map[string]any{{"name": "simplescope"}}}
	want := evalArrays(t, call(t, s, "evaluate", req))
	// Give the Go heap room to grow before the cap: its address space is reserved now.
	ballast := make([]byte, 256<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	ballast = nil
	rssKB(t) // GC: the ballast's memory is free again, its address space stays reserved
	vm := vmSizeKB(t)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &old); err != nil {
		t.Fatal(err)
	}
	limit := syscall.Rlimit{Cur: uint64(vm+40<<10) << 10, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &limit); err != nil {
		t.Fatal(err)
	}
	t.Logf("address space capped at %d MiB (VmSize %d MiB + 40 MiB)", limit.Cur>>20, vm>>10)
	out, err := Call(context.Background(), s, "evaluate", pack(t, req), nil)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_AS, &old); rerr != nil {
		t.Fatal(rerr)
	}
	switch {
	case err != nil && Status(err) == StatusOOM:
		t.Logf("capped evaluate: clear out-of-memory error: %v", err)
	case err != nil:
		t.Fatalf("capped evaluate: %v (status %d), want success after retries or an out-of-memory error", err, Status(err))
	default:
		var res map[string]any
		if err := msgpack.Unmarshal(out, &res); err != nil {
			t.Fatal(err)
		}
		stats := res["stats"].(map[string]any)
		t.Logf("capped evaluate: stats %v", stats)
		if fmt.Sprint(stats["oom_retries"]) == "0" {
			t.Errorf("the cap caused no out-of-memory retry: the test does not exercise the OOM path")
		}
		if d := sameArraysTol(want, evalArrays(t, res)); d != "" {
			t.Errorf("results after OOM retries differ from the uncapped ones: %s", d)
		}
	}
	if d := sameArraysTol(want, evalArrays(t, call(t, s, "evaluate", req))); d != "" {
		t.Errorf("after the cap was lifted the model gives other results: %s", d)
	}
}

// vmSizeKB is the process's address-space size (VmSize) in KiB.
func vmSizeKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatal("no VmSize in /proc/self/status")
	return 0
}
