package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/simplescope/simplescope/core/data"
	"github.com/simplescope/simplescope/core/gptj"
	"github.com/simplescope/simplescope/core/patchscope"
	"github.com/simplescope/simplescope/core/tokenizer"
	"github.com/simplescope/simplescope/core/torch"
	"github.com/simplescope/simplescope/internal/testutil"
)

// benchConfig is one random model and how many seed-preset documents to evaluate on it.
type benchConfig struct {
	name string // make_model.py --config
	docs int    // default document count ($SIMPLESCOPE_BENCH_DOCS overrides)
}

var configs = []benchConfig{
	{name: "tiny", docs: 16},
	{name: "small", docs: 48},
}

// cacheDir is where random models are kept between runs: $SIMPLESCOPE_BENCH_CACHE, else the
// user cache dir (or the temp dir) / simplescope-bench.
func cacheDir() string {
	if d := os.Getenv("SIMPLESCOPE_BENCH_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "simplescope-bench")
	}
	return filepath.Join(os.TempDir(), "simplescope-bench")
}

// modelDir returns a cached random model, making it with make_model.py if it is missing.
func modelDir(b *testing.B, name string) string {
	b.Helper()
	dir := filepath.Join(cacheDir(), name+"-seed0")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	if err := os.MkdirAll(cacheDir(), 0o755); err != nil {
		b.Fatalf("bench cache %s: %v", cacheDir(), err)
	}
	script := filepath.Join(testutil.RepoRoot(), "bench", "make_model.py")
	testutil.RunPython(b, script, "--config", name, "--out", dir, "--seed", "0")
	return dir
}

// seedDocs returns the first n documents of the repository's sample corpus (testdata/corpus) that the seed preset keeps,
// tokenized with BOS prepended (as the published run does).
func seedDocs(b *testing.B, tok *tokenizer.Tokenizer, bos, n, context int) [][]int {
	b.Helper()
	p, err := data.PresetByName("seed")
	if err != nil {
		b.Fatal(err)
	}
	corpus := testutil.CorpusPath()
	docs, err := p.Apply(corpus)
	if err != nil {
		b.Fatalf("seed preset on %s: %v", corpus, err)
	}
	if len(docs) < n {
		b.Fatalf("seed preset on %s: %d documents, want %d", corpus, len(docs), n)
	}
	prompts := make([][]int, n)
	for i := range prompts {
		ids := append([]int{bos}, tok.Encode(docs[i].Text)...)
		if len(ids) > context {
			ids = ids[:context]
		}
		prompts[i] = ids
	}
	return prompts
}

// builtinMethods builds logitlens, patchscope and simplescope as the API does with prepend_bos:
// the target prompt with BOS, the placeholder at its last "?".
func builtinMethods(tok *tokenizer.Tokenizer, bos int) []patchscope.Method {
	patch := func(name, text string) patchscope.Method {
		ids := append([]int{bos}, tok.Encode(text)...)
		return patchscope.Method{Name: name, Kind: patchscope.KindPatch, Target: ids,
			Placeholder: len(ids) - 1, TargetMode: patchscope.TargetSame}
	}
	return []patchscope.Method{
		{Name: "logitlens", Kind: patchscope.KindLogitLens},
		patch("patchscope", patchscope.PatchscopePrompt),
		patch("simplescope", patchscope.SimplescopePrompt),
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("$%s=%q: want a positive integer", name, v)
	}
	return n
}

// setup loads a benchmark model and its documents.
func setup(b *testing.B, c benchConfig) (*gptj.Model, []patchscope.Method, [][]int) {
	b.Helper()
	if n := envInt(b, "SIMPLESCOPE_BENCH_THREADS", 0); n > 0 {
		if err := torch.SetNumThreads(n); err != nil {
			b.Fatalf("set torch threads to %d: %v", n, err)
		}
	}
	dir := modelDir(b, c.name)
	m, err := gptj.Load(dir, torch.Float32, torch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	tok, err := tokenizer.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	n := envInt(b, "SIMPLESCOPE_BENCH_DOCS", c.docs)
	return m, builtinMethods(tok, tok.BOS()), seedDocs(b, tok, tok.BOS(), n, m.Cfg.NPositions)
}

// BenchmarkEvaluate times the whole experiment (3 methods × every layer × n documents, random
// positions, seed 42) and reports items/s, items = prompts × layers × methods.
func BenchmarkEvaluate(b *testing.B) {
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			m, methods, prompts := setup(b, c)
			runEvaluate(b, m, methods, prompts)
		})
	}
}

// BenchmarkMethod times each method alone on the small model (where the time goes by method).
func BenchmarkMethod(b *testing.B) {
	m, methods, prompts := setup(b, configs[1])
	for _, meth := range methods {
		b.Run(meth.Name, func(b *testing.B) {
			runEvaluate(b, m, []patchscope.Method{meth}, prompts)
		})
	}
}

func runEvaluate(b *testing.B, m *gptj.Model, methods []patchscope.Method, prompts [][]int) {
	b.Helper()
	req := patchscope.Request{Prompts: prompts, Methods: methods,
		Positions: patchscope.Positions{Mode: patchscope.PosRandom}, Seed: 42}
	items := float64(len(prompts) * m.Cfg.NLayer * len(methods))
	tokens := 0
	for _, p := range prompts {
		tokens += len(p)
	}
	var last *patchscope.Result
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := patchscope.Evaluate(context.Background(), m, req)
		if err != nil {
			b.Fatal(err)
		}
		last = res
	}
	b.StopTimer()
	sec := b.Elapsed().Seconds()
	b.ReportMetric(items*float64(b.N)/sec, "items/s")
	b.ReportMetric(float64(tokens)*float64(b.N)/sec, "srctok/s")
	if err := checkResult(last, len(prompts), m.Cfg.NLayer); err != nil {
		b.Fatal(err)
	}
}

// checkResult makes sure the timed run produced every metric (no NaN left by a skipped item).
func checkResult(r *patchscope.Result, n, L int) error {
	for _, mr := range r.Methods {
		if len(mr.Prec1) != n*L {
			return fmt.Errorf("method %s: %d prec1 values, want %d", mr.Name, len(mr.Prec1), n*L)
		}
		for i, v := range mr.Surprisal {
			if v != v || mr.Prec1[i] != mr.Prec1[i] {
				return fmt.Errorf("method %s: item %d (prompt %d, layer %d) has no result", mr.Name, i, i/L, i%L)
			}
		}
	}
	return nil
}
