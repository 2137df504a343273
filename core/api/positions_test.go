package api

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/internal/testutil"
)

// int64s decodes an int64 Array of a response.
func int64s(t *testing.T, v any) []int64 {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok || m["dtype"] != "int64" {
		t.Fatalf("not an int64 Array: %v", v)
	}
	b := m["data"].([]byte)
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// TestEvaluateNotebookPositions: through the API, notebook positions are CPython's
// random.seed(seed); randint(0, len-1) over method, layer, prompt, where len counts BOS and is cut
// to the model's context (64 tokens for the test model); an empty text with BOS is a BOS-only
// prompt that takes its draw.
func TestEvaluateNotebookPositions(t *testing.T) {
	s := shared(t)
	long := strings.Repeat("many words in a row ", 40) // > 64 tokens
	texts := []string{"The cat sat on the mat.", long, "", "1135 -> 1135"}
	methods := []map[string]any{{"name": "logitlens"}, {"name": "patchscope"}, {"name": "simplescope"}}
	res := call(t, s, "evaluate", map[string]any{"texts": texts, "prepend_bos": true, "truncate": true,
		"positions": "notebook", "seed": 42, "methods": methods})
	nCtx := s.Model.Cfg.NPositions
	lengths := make([]int, len(texts))
	for i, text := range texts {
		lengths[i] = min(1+len(s.Tok.Encode(text)), nCtx)
	}
	if got := int64s(t, res["prompt_lengths"]); fmt.Sprint(got) != fmt.Sprint(lengths) {
		t.Fatalf("prompt lengths %v, want %v (BOS included, cut to %d)", got, lengths, nCtx)
	}
	L := s.Model.Cfg.NLayer
	spec, _ := json.Marshal(map[string]any{"notebook": []map[string]any{{"seed": 42, "lengths": lengths, "n_methods": len(methods), "n_layers": L}}})
	in := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(in, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	var ref struct{ Notebook [][][][]int }
	out := testutil.RunPython(t, filepath.Join(testutil.RepoRoot(), "core", "patchscope", "testdata", "pyrandom_ref.py"), in)
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	for mi, m := range res["methods"].([]any) {
		pos := int64s(t, m.(map[string]any)["arrays"].(map[string]any)["position"])
		for d := range texts {
			for l := 0; l < L; l++ {
				if want := ref.Notebook[0][mi][l][d]; pos[d*L+l] != int64(want) {
					t.Fatalf("method %d prompt %d layer %d: position %d, CPython %d", mi, d, l, pos[d*L+l], want)
				}
			}
		}
	}
	if res["positions"] != "notebook" || fmt.Sprint(res["seed"]) != "42" {
		t.Fatalf("echoed positions %v seed %v", res["positions"], res["seed"])
	}
}

// TestEvaluatePresetDefaults: a named preset supplies positions, seed and prepend_bos where the
// request leaves them out (the seed preset: notebook, 42, BOS); given values win.
func TestEvaluatePresetDefaults(t *testing.T) {
	s := shared(t)
	base := func() map[string]any {
		return map[string]any{"texts": []string{"a b c", "d e"}, "methods": []map[string]any{{"name": "logitlens"}}, "preset": "seed"}
	}
	res := call(t, s, "evaluate", base())
	if res["positions"] != "notebook" || fmt.Sprint(res["seed"]) != "42" || res["prepend_bos"] != true || res["preset"] != "seed" {
		t.Fatalf("seed preset: positions %v seed %v prepend_bos %v preset %v", res["positions"], res["seed"], res["prepend_bos"], res["preset"])
	}
	req := base()
	req["positions"], req["seed"], req["prepend_bos"] = "last", 3, false
	res = call(t, s, "evaluate", req)
	if res["positions"] != "last" || fmt.Sprint(res["seed"]) != "3" || res["prepend_bos"] != false {
		t.Fatalf("explicit settings: positions %v seed %v prepend_bos %v", res["positions"], res["seed"], res["prepend_bos"])
	}
	req = base()
	req["preset"] = "paper"
	if res = call(t, s, "evaluate", req); res["positions"] != "paper" || res["prepend_bos"] != false {
		t.Fatalf("paper preset: positions %v prepend_bos %v", res["positions"], res["prepend_bos"])
	}
}

// TestEvaluateSettingErrors: an unknown position mode, a seed outside int64 or not an integer,
// and an unknown preset are input errors naming the argument, raised before any work (before the
// prompts are even looked at: these requests give texts and tokens both, which is refused later).
func TestEvaluateSettingErrors(t *testing.T) {
	s := shared(t)
	for _, tc := range []struct {
		name  string
		key   string
		value any
		want  string
	}{
		{"unknown mode", "positions", "first", `positions: unknown mode "first" (known: random, notebook, paper, last`},
		{"seed above int64", "seed", uint64(math.MaxUint64), "seed 18446744073709551615 is outside the int64 range"},
		{"seed 2^63", "seed", uint64(1) << 63, "seed 9223372036854775808 is outside the int64 range"},
		{"seed float", "seed", 1.5, "seed must be an integer"},
		{"seed text", "seed", "42", "seed must be an integer"},
		{"unknown preset", "preset", "nope", `preset: unknown dataset preset "nope" (known: paper, seed)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := map[string]any{"texts": []string{"a"}, "tokens": [][]int{{1}}, "methods": []map[string]any{{"name": "logitlens"}}, tc.key: tc.value}
			_, err := Call(context.Background(), s, "evaluate", pack(t, req), nil)
			if err == nil || Status(err) != StatusInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (status %d), want an input error containing %q", err, Status(err), tc.want)
			}
		})
	}
	// the int64 extremes are accepted
	for _, seed := range []any{int64(math.MinInt64), int64(math.MaxInt64), uint64(math.MaxInt64)} {
		call(t, s, "evaluate", map[string]any{"tokens": [][]int{{1, 2, 3}}, "positions": "notebook", "seed": seed,
			"methods": []map[string]any{{"name": "logitlens"}}})
	}
}

// TestEvaluateEmptyPrompts: an empty text or token list is skipped and listed, not an error;
// with BOS an empty text is the BOS token alone and is evaluated (at position 0).
func TestEvaluateEmptyPrompts(t *testing.T) {
	s := shared(t)
	lens := []map[string]any{{"name": "logitlens"}}
	res := call(t, s, "evaluate", map[string]any{"texts": []string{"a b", "", "c"}, "methods": lens, "positions": "notebook"})
	if fmt.Sprint(res["skipped"]) != "map[empty:[1] too_short:[]]" {
		t.Fatalf("texts without BOS: skipped %v", res["skipped"])
	}
	res = call(t, s, "evaluate", map[string]any{"tokens": [][]int{{1, 2}, {}, {3}, {}}, "methods": lens})
	if fmt.Sprint(res["skipped"]) != "map[empty:[1 3] too_short:[]]" {
		t.Fatalf("tokens: skipped %v", res["skipped"])
	}
	res = call(t, s, "evaluate", map[string]any{"texts": []string{"a b", "", "c"}, "prepend_bos": true, "methods": lens, "positions": "notebook"})
	pos := int64s(t, res["methods"].([]any)[0].(map[string]any)["arrays"].(map[string]any)["position"])
	L := s.Model.Cfg.NLayer
	if fmt.Sprint(res["skipped"]) != "map[empty:[] too_short:[]]" || int64s(t, res["prompt_lengths"])[1] != 1 || pos[L] != 0 {
		t.Fatalf("BOS-only prompt: skipped %v, lengths %v, positions %v", res["skipped"], int64s(t, res["prompt_lengths"]), pos)
	}
	// inspect still refuses an empty prompt
	if _, err := Call(context.Background(), s, "inspect", pack(t, map[string]any{"text": "", "methods": lens}), nil); err == nil || Status(err) != StatusInput {
		t.Fatalf("inspect of an empty text: %v", err)
	}
}

// TestEvaluateTF32: the response reports the TF32 flags in effect (those torch.backends reads);
// on a CPU model tf32 changes nothing, during or after the call.
func TestEvaluateTF32(t *testing.T) {
	s := shared(t)
	cublas, cudnn, err := torch.TF32()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []any{nil, true, false} {
		res := call(t, s, "evaluate", map[string]any{"tokens": [][]int{{1, 2, 3}}, "tf32": want, "methods": []map[string]any{{"name": "logitlens"}}})
		got := res["tf32"].(map[string]any)
		if !reflect.DeepEqual(got, map[string]any{"cublas": cublas, "cudnn": cudnn}) {
			t.Fatalf("tf32 %v on CPU: reported %v, flags are cublas %v cudnn %v", want, got, cublas, cudnn)
		}
		if b, d, _ := torch.TF32(); b != cublas || d != cudnn {
			t.Fatalf("tf32 %v on CPU changed the flags to %v %v", want, b, d)
		}
	}
}
