package api

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/simplescope/simplescope/core/torch"
)

// fuzzMethods are the methods FuzzCall exercises (every method but the debug.* ones). A corpus entry
// names its method by index into this list, so methods are only ever appended to it
// (TestFuzzMethodsCoverServed checks that none is missing).
func fuzzMethods() []string {
	return []string{"config", "decode", "evaluate", "inspect", "load_data", "run_with_cache",
		"token_strings", "tokenize", "generate", "hidden_states", "patch"}
}

func TestFuzzMethodsCoverServed(t *testing.T) {
	served := slices.DeleteFunc(Methods(), func(m string) bool { return strings.HasPrefix(m, "debug.") })
	listed := slices.Clone(fuzzMethods())
	sort.Strings(served)
	sort.Strings(listed)
	if !slices.Equal(served, listed) {
		t.Fatalf("api.Methods() %v but fuzzMethods() %v: append the new methods to fuzzMethods", served, listed)
	}
}

// corpusEntry is one valid request of the seed corpus.
type corpusEntry struct {
	name   string
	method string
	req    any
}

// demoCorpus is the bundled demo corpus, relative to this package's folder (go test's working
// directory), so that corpus entries do not depend on where the repository lives.
var demoCorpus = filepath.Join("..", "..", "python", "simplescope", "data", "demo.jsonl.zst")

// corpusEntries are valid requests of every method, as the Python binding sends them.
func corpusEntries() []corpusEntry {
	three := I64Array([]int64{1, 2, 1}, 3)
	return []corpusEntry{
		{"config", "config", map[string]any{}},
		{"tokenize", "tokenize", map[string]any{"texts": []string{"Hello world", "<|endoftext|> ünï"}, "prepend_bos": true}},
		{"decode", "decode", map[string]any{"ids": [][]int{{15496, 995}, {50256, 13}}}},
		{"token_strings", "token_strings", map[string]any{"ids": []int{15496, 995, 50256}}},
		{"run_with_cache", "run_with_cache", map[string]any{"tokens": [][]int{{1, 2, 3}, {4, 5}}, "names": []string{"hook_embed", "blocks.1.hook_resid_post"}}},
		{"evaluate_texts", "evaluate", smallEval(42)},
		{"evaluate_tokens_positions", "evaluate", map[string]any{
			"tokens": [][]int{{10, 11, 12, 13}, {20, 21, 22}, {30, 31}}, "prepend_bos": false,
			"methods": []map[string]any{{"name": "logitlens"}, {"name": "simplescope"}}, "positions": three,
			"layers": []int{0, 1}, "batch_tokens": 4, "patch_rows": 2, "chunk_prompts": 2}},
		{"evaluate_custom", "evaluate", map[string]any{
			"texts": []string{"a b c d"}, "prepend_bos": true, "positions": "last", "seed": 3,
			"methods": []map[string]any{
				{"name": "grid", "target": "x = ? ;", "placeholder": "?", "target_layer": "all"},
				{"name": "fixed", "target_tokens": []int{5, 6, 7}, "placeholder": -1, "target_layer": 1},
				{"name": "last", "kind": "patch", "target": "word:", "placeholder": ":", "target_layer": "last"}}}},
		{"evaluate_preset_notebook", "evaluate", map[string]any{
			"texts": []string{"The cat sat on the mat.", "", "1135 -> 1135"}, "preset": "seed", "tf32": true,
			"truncate": true, "methods": []map[string]any{{"name": "logitlens"}, {"name": "simplescope"}}}},
		{"evaluate_paper_positions", "evaluate", map[string]any{
			"tokens": [][]int{{10, 11, 12, 13}, {}, {20}, {30, 31, 32}}, "prepend_bos": false, "positions": "paper",
			"seed": int64(-1) << 62, "methods": []map[string]any{{"name": "logitlens"}}, "layers": []int{1}}},
		{"inspect", "inspect", map[string]any{"text": "The cat sat", "prepend_bos": true, "k": 3, "position": -1,
			"methods": []map[string]any{{"name": "logitlens"}, {"name": "patchscope"}}, "layers": []int{1}}},
		{"load_data", "load_data", map[string]any{"path": demoCorpus, "max_docs": 3}},
		{"load_data_preset", "load_data", map[string]any{"path": demoCorpus, "preset": "seed"}},
		{"hidden_states", "hidden_states", map[string]any{"texts": []string{"Hello world", "a b c"},
			"prepend_bos": true, "layers": []int{0, 1}, "positions": []int{-1, 1}}},
		{"patch", "patch", map[string]any{"targets": map[string]any{"tokens": [][]int{{7, 8, 9}, {7, 8, 9}, {3}}},
			"site": "resid_post", "layers": []int{0, 1, 1}, "positions": [][]int{{-1}, {0, 2}, {0}},
			"vectors": F32Array(make([]float32, 16), 16), "batch_rows": 2}},
		{"patch_source", "patch", map[string]any{"targets": map[string]any{"texts": []string{"?"}},
			"prepend_bos": true, "site": "resid_pre", "layers": []int{1, 1}, "positions": [][]int{{-1}, {-1}},
			"source":    map[string]any{"texts": []string{"one two", "three"}, "layers": []int{0, 1}, "positions": []int{1, -1}},
			"transform": map[string]any{"W": F32Array(make([]float32, 256), 16, 16), "b": F32Array(make([]float32, 16), 16)}}},
		{"generate", "generate", map[string]any{"targets": map[string]any{"tokens": [][]int{{7, 8, 9}, {3}}},
			"max_new_tokens": 3, "layers": []int{0, 1}, "positions": [][]int{{-1}, {0}},
			"vectors": F32Array(make([]float32, 32), 2, 16), "do_sample": true, "temperature": 0.7,
			"top_k": 5, "top_p": 0.9, "seed": 1, "stop": []string{"x"}}},
	}
}

// corpusFile is the go-fuzz corpus file of an entry (format "go test fuzz v1").
func corpusFile(t testing.TB, e corpusEntry) []byte {
	idx := -1
	for i, m := range fuzzMethods() {
		if m == e.method {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("corpus entry %s: unknown method %q", e.name, e.method)
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true) // map order must not change the file
	if err := enc.Encode(e.req); err != nil {
		t.Fatalf("corpus entry %s: %v", e.name, err)
	}
	return []byte(fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", idx, buf.Bytes()))
}

const corpusDir = "testdata/fuzz/FuzzCall"

// TestFuzzCallCorpus checks that every seed request succeeds and that testdata/fuzz/FuzzCall
// holds exactly what corpusEntries generates. SIMPLESCOPE_WRITE_FUZZ_CORPUS=1 rewrites it.
func TestFuzzCallCorpus(t *testing.T) {
	s := shared(t)
	write := os.Getenv("SIMPLESCOPE_WRITE_FUZZ_CORPUS") != ""
	if write {
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	covered := map[string]bool{}
	for _, e := range corpusEntries() {
		t.Run(e.name, func(t *testing.T) {
			sess := s
			if e.method == "load_data" {
				sess = nil
			}
			out, err := Call(context.Background(), sess, e.method, pack(t, e.req), nil)
			if err != nil {
				t.Fatalf("%s: %v (status %d)", e.method, err, Status(err))
			}
			ReleaseResultTensors(out)
			covered[e.method] = true
			path := filepath.Join(corpusDir, e.name)
			want := corpusFile(t, e)
			if write {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s is missing or stale (%v): regenerate with SIMPLESCOPE_WRITE_FUZZ_CORPUS=1 go test -run TestFuzzCallCorpus ./core/api", path, err)
			}
		})
	}
	if len(covered) == 0 {
		return // -run selected no entry
	}
	for _, m := range fuzzMethods() {
		if !covered[m] {
			t.Errorf("the seed corpus has no request for method %q", m)
		}
	}
}

// FuzzCall sends arbitrary msgpack requests to every method of the C API's core (Call) on a
// tiny model, and to a nil session. A call must not panic, must answer either a msgpack map or
// an error whose status is a real one (not OK, not a panic) with a message, and must leave the
// live-tensor count as it was once the tensor handles of its result are released. The seeds (testdata/fuzz/FuzzCall) are valid requests of every
// method; `go test -fuzz FuzzCall ./core/api` explores further.
func FuzzCall(f *testing.F) {
	s := shared(f)
	methods := fuzzMethods()
	f.Fuzz(func(t *testing.T, mi uint8, req []byte) {
		method := methods[int(mi)%len(methods)]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, sess := range []*Session{s, nil} {
			before := torch.LiveTensors()
			out, err := Call(ctx, sess, method, req, nil)
			if err == nil {
				ReleaseResultTensors(out) // tensor handles in the result (run_with_cache)
			}
			if after := torch.LiveTensors(); after != before {
				t.Fatalf("%s(%q): live tensors %d -> %d", method, req, before, after)
			}
			if err != nil {
				st := Status(err)
				if st == StatusOK || st == StatusPanic || strings.TrimSpace(err.Error()) == "" {
					t.Fatalf("%s(%q): error %q has status %d", method, req, err, st)
				}
				if sess == nil && method != "load_data" && st != StatusInput {
					t.Fatalf("%s without a model: status %d (%v), want %d", method, st, err, StatusInput)
				}
				continue
			}
			if sess == nil && method != "load_data" {
				t.Fatalf("%s without a model succeeded", method)
			}
			var res map[string]any
			if err := msgpack.Unmarshal(out, &res); err != nil {
				t.Fatalf("%s(%q): result is not a msgpack map: %v", method, req, err)
			}
		}
	})
}
