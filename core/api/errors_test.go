package api

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/core/errs"
	"github.com/simplescope/simplescope/core/torch"
)

// Status is the one mapping from errors to statuses: an errs input error is StatusInput however
// deeply it is wrapped, and cancellation, out of memory and a missing file take precedence.
func TestStatusMapping(t *testing.T) {
	notExist := fmt.Errorf("model folder m: %w", os.ErrNotExist)
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, StatusOK},
		{errors.New("boom"), StatusRuntime},
		{errs.Input("layer %d out of range", 9), StatusInput},
		{fmt.Errorf("evaluate: %w", errs.Input("layer %d out of range", 9)), StatusInput},
		{errs.AsInput(errors.New("config.json: bad")), StatusInput},
		{errs.AsInput(notExist), StatusNotFound},
		{errs.AsInput(fmt.Errorf("x: %w", context.Canceled)), StatusCancelled},
		{errs.AsInput(fmt.Errorf("x: %w", torch.ErrOOM)), StatusOOM},
		{notExist, StatusNotFound},
		{context.DeadlineExceeded, StatusCancelled},
	} {
		if got := Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// Every package's refusals reach the C API as StatusInput with their own message: the API's
// (unknown method), the model's (gptj: token id out of range), the engine's (patchscope: layer
// and k out of range), and those the API marks at its boundary (tokenizer, data, model files).
func TestInputErrorsFromEveryPackage(t *testing.T) {
	s := shared(t)
	for _, tc := range []struct {
		name, method string
		req          any
		want         string
	}{
		{"api", "nope", map[string]any{}, `unknown method "nope"`},
		{"api/site", "run_with_cache", map[string]any{"tokens": [][]int{{1}}, "names": []string{"blocks.9.hook_resid_post"}}, "layer 9 out of range"},
		{"gptj", "run_with_cache", map[string]any{"tokens": [][]int{{50256, 50400}}}, "gptj: sequence 0 token 1: id 50400 out of range"},
		{"patchscope/evaluate", "evaluate", map[string]any{"tokens": [][]int{{1, 2}}, "layers": []int{7},
			"methods": []map[string]any{{"name": "logitlens"}}}, "layer 7 out of range"},
		{"patchscope/inspect", "inspect", map[string]any{"tokens": []int{1, 2}, "k": 1 << 20,
			"methods": []map[string]any{{"name": "logitlens"}}}, "k = 1048576 out of range"},
		{"tokenizer", "decode", map[string]any{"ids": [][]int{{99999}}}, "unknown token id 99999"},
		{"data", "load_data", map[string]any{"path": "x.jsonl", "preset": "nope"}, `preset "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Call(context.Background(), s, tc.method, pack(t, tc.req), nil)
			if err == nil || Status(err) != StatusInput || !errs.IsInput(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (status %d), want an input error containing %q", err, Status(err), tc.want)
			}
		})
	}
	t.Run("model files", func(t *testing.T) {
		d := copyModel(t, "tiny")
		if err := os.WriteFile(filepath.Join(d, "config.json"), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(d, "cpu", "float32")
		if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), "config.json") {
			t.Fatalf("garbled config.json: error %v (status %d), want an input error naming config.json", err, Status(err))
		}
	})
}

// debug.panic is served only while SIMPLESCOPE_DEBUG_PANIC=1 at the time of the call; otherwise
// it is an unknown method (an input error), also for Methods().
func TestDebugPanicNeedsEnv(t *testing.T) {
	t.Setenv(DebugPanicEnv, "")
	_, err := Call(context.Background(), nil, "debug.panic", nil, nil)
	if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), DebugPanicEnv+"=1") {
		t.Fatalf("debug.panic without %s: error %v (status %d), want an input error naming the variable", DebugPanicEnv, err, Status(err))
	}
	for _, m := range Methods() {
		if m == "debug.panic" {
			t.Fatalf("Methods() lists debug.panic without %s", DebugPanicEnv)
		}
	}
	t.Setenv(DebugPanicEnv, "1")
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		_, err = Call(context.Background(), nil, "debug.panic", nil, nil)
	}()
	if !strings.Contains(fmt.Sprint(recovered), "deliberate panic") {
		t.Fatalf("debug.panic with %s=1: recovered %v (error %v), want the deliberate panic", DebugPanicEnv, recovered, err)
	}
}
