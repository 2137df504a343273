package gptj

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/core/weights"
	"github.com/simplescope/simplescope/internal/testutil"
)

// familyCases are the models testdata/hf_families.py makes (its CASES), by name.
var familyCases = []string{"neox", "neox-seq", "gpt2", "gpt2-scaled", "llama3", "llama-bias", "mistral", "qwen2", "qwen3", "gemma"}

var (
	famOnce sync.Once
	famDir  string
	famErr  error
)

// makeFamily returns the tiny random model of case name with HF's outputs (one Python run makes
// them all).
func makeFamily(t *testing.T, name string) *refModel {
	t.Helper()
	famOnce.Do(func() {
		famDir, famErr = os.MkdirTemp("", "families-ref-")
		if famErr != nil {
			return
		}
		script := filepath.Join(testutil.RepoRoot(), "core", "gptj", "testdata", "hf_families.py")
		testutil.RunPython(t, script, famDir)
	})
	if famErr != nil {
		t.Fatal(famErr)
	}
	dir := filepath.Join(famDir, name)
	ref, err := weights.Open(filepath.Join(dir, "ref"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	n := 0
	for _, k := range ref.Keys() {
		if strings.HasPrefix(k, "resid.0.") {
			n++
		}
	}
	return &refModel{dir: filepath.Join(dir, "model"), ref: ref, nLayer: n}
}

// worstDiff is the largest |got − want|.
func worstDiff(got, want []float32) float64 {
	w := 0.0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if d > w || math.IsNaN(d) {
			w = d
		}
	}
	return w
}

// Every family's logits, hook_embed and every block's output equal HF's (float32, ≤ 1e-4), with
// the prompts batched under right and left padding.
func TestFamiliesMatchHF(t *testing.T) {
	for _, name := range familyCases {
		t.Run(name, func(t *testing.T) {
			r := makeFamily(t, name)
			m, err := Load(r.dir, torch.Float32, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Cfg.NLayer != r.nLayer {
				t.Fatalf("%d layers, reference has %d", m.Cfg.NLayer, r.nLayer)
			}
			seqs := [][]int{r.ids(t, 0), r.ids(t, 1), r.ids(t, 2)}
			C, V := m.Cfg.NEmbd, m.Cfg.VocabSize
			worstLogit, worstResid := 0.0, 0.0
			for _, left := range []bool{false, true} {
				out, err := m.Forward(context.Background(), seqs, Request{Full: true, LeftPad: left})
				if err != nil {
					t.Fatal(err)
				}
				T := out.T
				logits := readAll(t, out.Logits)
				for b, q := range seqs {
					pad := fmt.Sprintf("leftpad=%v seq %d", left, b)
					want, _ := r.f32(t, fmt.Sprintf("logits.%d", b))
					got := rowsOf(logits, b, T, V, out.Offset[b], len(q))
					compare(t, pad+" logits", got, want, 1e-4)
					worstLogit = math.Max(worstLogit, worstDiff(got, want))
					for l := -1; l < m.Cfg.NLayer; l++ {
						key, site := fmt.Sprintf("resid.%d.%d", b, l), fmt.Sprintf("blocks.%d.hook_resid_post", l)
						if l < 0 {
							key, site = fmt.Sprintf("embed.%d", b), "hook_embed"
						}
						want, _ := r.f32(t, key)
						got := rowsOf(readAll(t, out.Resid[l]), b, T, C, out.Offset[b], len(q))
						compare(t, pad+" "+site, got, want, 1e-4)
						worstResid = math.Max(worstResid, worstDiff(got, want))
					}
				}
				out.Close()
			}
			t.Logf("%s (%s): max |ours − HF| logits %.2g, residuals %.2g", name, m.Cfg.ModelType, worstLogit, worstResid)
		})
	}
}

// The cached-prefix passes (ComputePrefix + Continue, the engine's continuations) equal the full
// forward for every family: grouped K/V heads in the cache, sliding windows over a cached prefix
// (PastPos), learned positions.
func TestFamiliesPrefixContinuation(t *testing.T) {
	for _, name := range familyCases {
		t.Run(name, func(t *testing.T) {
			r := makeFamily(t, name)
			m, err := Load(r.dir, torch.Float32, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			seq := r.ids(t, 2) // 13 tokens: longer than the test windows
			T, V := len(seq), m.Cfg.VocabSize
			full, err := m.Forward(context.Background(), [][]int{seq}, Request{Full: true})
			if err != nil {
				t.Fatal(err)
			}
			defer full.Close()
			want := readAll(t, full.Logits)[(T-1)*V:]
			prefix, err := m.ComputePrefix(context.Background(), seq[:T-1])
			if err != nil {
				t.Fatal(err)
			}
			defer prefix.Close()
			if sh := prefix.K[0].Shape(); sh[1] != int64(m.Cfg.KVHeads()) {
				t.Fatalf("cached keys %v: want %d key/value heads", sh, m.Cfg.KVHeads())
			}
			for _, start := range []int{0, m.Cfg.NLayer / 2, m.Cfg.NLayer} {
				s := torch.NewScope()
				h := s.Narrow(s.Reshape(full.Resid[start-1], int64(T), -1), 0, int64(T-1), 1)
				h = s.Cat([]*torch.Tensor{h, h}, 0)
				if s.Err() != nil {
					t.Fatal(s.Err())
				}
				lg, err := m.Continue(context.Background(), h, start, prefix)
				if err != nil {
					t.Fatal(err)
				}
				got := readAll(t, lg)
				lg.Close()
				s.Close()
				compare(t, fmt.Sprintf("continue from block %d row 0", start), got[:V], want, 1e-4)
				compare(t, fmt.Sprintf("continue from block %d row 1", start), got[V:], want, 1e-4)
			}
		})
	}
}

// The config each family's checkpoint is read into (the choices blockForward makes).
func TestFamiliesConfig(t *testing.T) {
	want := map[string]string{
		"neox":        "gpt_neox LayerNorm halves fused-per-head plain parallel2 rot=4 kv=4 d=16 tied=false windows=[0 0 0]",
		"neox-seq":    "gpt_neox LayerNorm halves fused-per-head plain sequential rot=8 kv=4 d=16 tied=true windows=[0 0 0]",
		"gpt2":        "gpt2 LayerNorm none fused plain sequential rot=0 kv=4 d=16 tied=true windows=[0 0 0]",
		"gpt2-scaled": "gpt2 LayerNorm none fused plain sequential rot=0 kv=4 d=16 tied=false windows=[0 0 0]",
		"llama3":      "llama RMSNorm halves separate gated sequential rot=16 kv=2 d=16 tied=true windows=[0 0 0]",
		"llama-bias":  "llama RMSNorm halves separate gated sequential rot=16 kv=1 d=16 tied=false windows=[0 0 0]",
		"mistral":     "mistral RMSNorm halves separate gated sequential rot=16 kv=2 d=16 tied=false windows=[4 4 4]",
		"qwen2":       "qwen2 RMSNorm halves separate gated sequential rot=16 kv=2 d=16 tied=true windows=[0 3 3]",
		"qwen3":       "qwen3 RMSNorm halves separate gated sequential rot=24 kv=2 d=24 tied=false windows=[0 0 0]",
		"gemma":       "gemma RMSNorm+1 halves separate gated sequential rot=32 kv=1 d=32 tied=true windows=[0 0 0]",
	}
	names := map[any]string{LayerNorm: "LayerNorm", RMSNorm: "RMSNorm", RMSNormPlusOne: "RMSNorm+1", RotaryPairs: "pairs", RotaryHalves: "halves",
		RotaryNone: "none", QKVSeparate: "separate", QKVFused: "fused", QKVFusedPerHead: "fused-per-head",
		MLPPlain: "plain", MLPGated: "gated", ParallelOneNorm: "parallel1", ParallelTwoNorm: "parallel2", Sequential: "sequential"}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, name := range keys {
		r := makeFamily(t, name)
		c, err := ConfigFromFile(r.dir)
		if err != nil {
			t.Fatal(err)
		}
		f := c.Family
		got := fmt.Sprintf("%s %s %s %s %s %s rot=%d kv=%d d=%d tied=%v windows=%v", c.ModelType, names[f.Norm], names[f.Rotary],
			names[f.QKV], names[f.MLP], names[f.Residual], c.RotaryDim, c.KVHeads(), c.HeadDim(), c.Tied, c.Windows)
		if got != want[name] {
			t.Errorf("%s:\n got  %s\n want %s", name, got, want[name])
		}
	}
}

// writeSafetensors writes tensors (name -> info and bytes) as a safetensors file.
func writeSafetensors(t *testing.T, path string, infos map[string]weights.Info, data map[string][]byte) {
	t.Helper()
	names := make([]string, 0, len(infos))
	for n := range infos {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	var body []byte
	for _, n := range names {
		header[n] = map[string]any{"dtype": strings.ToUpper(infos[n].DType.String()), "shape": infos[n].Shape,
			"data_offsets": []int{len(body), len(body) + len(data[n])}}
		body = append(body, data[n]...)
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if err := os.WriteFile(path, append(append(n[:], h...), body...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint that lacks a weight, or whose shapes disagree with its config, fails to load
// with the key named, and leaves nothing allocated.
func TestFamiliesLoadErrors(t *testing.T) {
	cases := []struct {
		family, drop, configFrom, configTo, want string
	}{
		{"llama3", "model.layers.1.self_attn.k_proj.weight", "", "", `no tensor "model.layers.1.self_attn.k_proj.weight"`},
		{"llama3", "", `"num_key_value_heads": 2`, `"num_key_value_heads": 4`, "load model.layers.0.self_attn.k_proj.weight from"},
		{"neox", "gpt_neox.layers.2.attention.query_key_value.bias", "", "", `no tensor "gpt_neox.layers.2.attention.query_key_value.bias"`},
		{"neox", "embed_out.weight", "", "", "the unembedding embed_out.weight / lm_head.weight is missing"},
		{"gpt2", "h.0.mlp.c_fc.weight", "", "", `no tensor "h.0.mlp.c_fc.weight"`},
		{"gpt2", "", `"n_inner": null`, `"n_inner": 100`, "load h.0.mlp.c_fc.weight from"},
		{"qwen3", "model.layers.0.self_attn.q_norm.weight", "", "", `no tensor "model.layers.0.self_attn.q_norm.weight"`},
		{"qwen3", "", `"head_dim": 24`, `"head_dim": 16`, "shape [96 64], want [64 64] (from config.json)"},
		{"qwen2", "model.layers.0.self_attn.v_proj.bias", "", "", `no tensor "model.layers.0.self_attn.v_proj.bias"`},
	}
	for _, tc := range cases {
		t.Run(tc.family+" "+tc.drop+tc.configTo, func(t *testing.T) {
			r := makeFamily(t, tc.family)
			dir := t.TempDir()
			copyDir(t, r.dir, dir)
			if tc.drop != "" {
				st, err := weights.Open(r.dir)
				if err != nil {
					t.Fatal(err)
				}
				infos, data := map[string]weights.Info{}, map[string][]byte{}
				found := false
				for _, k := range st.Keys() {
					if k == tc.drop {
						found = true
						continue
					}
					b, info, err := st.Bytes(k)
					if err != nil {
						t.Fatal(err)
					}
					infos[k], data[k] = info, append([]byte(nil), b...)
				}
				st.Close()
				if !found {
					t.Fatalf("the checkpoint has no %s", tc.drop)
				}
				writeSafetensors(t, filepath.Join(dir, "model.safetensors"), infos, data)
			}
			if tc.configTo != "" {
				p := filepath.Join(dir, "config.json")
				b, _ := os.ReadFile(p)
				if !strings.Contains(string(b), tc.configFrom) {
					t.Fatalf("config.json has no %s:\n%s", tc.configFrom, b)
				}
				os.WriteFile(p, []byte(strings.Replace(string(b), tc.configFrom, tc.configTo, 1)), 0o644)
			}
			live := torch.LiveTensors()
			m, err := Load(dir, torch.Float32, torch.CPU)
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if n := torch.LiveTensors(); n != live {
				t.Fatalf("%d tensors alive after the failed load, %d before", n, live)
			}
		})
	}
}

// In bfloat16 every family stays as close to the float32 reference as HF's own bf16 run does:
// |ours − HF f32| at most twice |HF bf16 − HF f32| plus 1% of the largest logit (both sides
// round at different points — our attention scores are float32, HF's eager ones bf16 — so
// neither is the other's reference; a wrong cast, rotary or norm moves logits by tens of percent).
func TestFamiliesBFloat16(t *testing.T) {
	for _, name := range familyCases {
		t.Run(name, func(t *testing.T) {
			r := makeFamily(t, name)
			m, err := Load(r.dir, torch.BFloat16, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			for i := 0; i < 3; i++ {
				out, err := m.Forward(context.Background(), [][]int{r.ids(t, i)}, Request{Full: true})
				if err != nil {
					t.Fatal(err)
				}
				got := readAll(t, out.Logits)
				out.Close()
				hfBF16, _ := r.f32(t, fmt.Sprintf("bf16.logits.%d", i))
				f32, _ := r.f32(t, fmt.Sprintf("logits.%d", i))
				scale := 0.0
				for _, v := range f32 {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				ours, theirs := worstDiff(got, f32), worstDiff(hfBF16, f32)
				t.Logf("seq %d: max |ours bf16 − f32| %.3g, |HF bf16 − f32| %.3g, |ours − HF bf16| %.3g (largest logit %.2f)",
					i, ours, theirs, worstDiff(got, hfBF16), scale)
				if bound := 2*theirs + 0.01*scale; ours > bound {
					t.Fatalf("seq %d: bf16 logits %.3g from float32, HF's bf16 run %.3g: bound %.3g", i, ours, theirs, bound)
				}
			}
		})
	}
}

// The families keep the block loop free of host↔device transfers: window masks, positions and
// rotary angles are made before it (TestNoTransfersInBlockLoop's check).
func TestFamiliesNoTransfersInBlockLoop(t *testing.T) {
	for _, name := range []string{"mistral", "qwen2", "gpt2", "gemma"} {
		t.Run(name, func(t *testing.T) {
			r := makeFamily(t, name)
			m, err := Load(r.dir, torch.Float32, torch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			seq := r.ids(t, 2)
			c0 := torch.TransferCounts()
			out, err := m.Forward(ctx, [][]int{seq, r.ids(t, 0)}, Request{Full: true, LeftPad: true})
			if err != nil {
				t.Fatal(err)
			}
			h := out.Resid[0]
			prefix, err := m.ComputePrefix(ctx, seq[:len(seq)-1])
			if err != nil {
				t.Fatal(err)
			}
			s := torch.NewScope()
			lg, err := m.Continue(ctx, s.Reshape(s.Narrow(h, 1, 3, 1), 2, -1), 1, prefix)
			if err != nil {
				t.Fatal(err)
			}
			lg.Close()
			s.Close()
			prefix.Close()
			out.Close()
			if d := torch.TransferCounts().Sub(c0); d.HotUploads != 0 || d.HotSyncs != 0 {
				t.Errorf("%d uploads and %d syncs inside the block loop, want none", d.HotUploads, d.HotSyncs)
			}
		})
	}
}
