package tokenizer

import (
	"testing"
)

// BenchmarkEncodeCorpus encodes every corpus document once per iteration on one goroutine and
// reports tokens/s (the word cache is warm after the first pass, as HF's is). Run it with
// bench/tokenizer_side_by_side.sh for the comparison with HF tokenizers.
func BenchmarkEncodeCorpus(b *testing.B) {
	tok, docs := gptj(b), corpus(b)
	bytes := 0
	for _, d := range docs {
		bytes += len(d)
	}
	b.SetBytes(int64(bytes))
	b.ResetTimer()
	tokens := 0
	for i := 0; i < b.N; i++ {
		for _, d := range docs {
			tokens += len(tok.Encode(d))
		}
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEncodeCorpusCold is the same with an empty cache at every pass (Load excluded).
func BenchmarkEncodeCorpusCold(b *testing.B) {
	docs := corpus(b)
	tokens := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tok, err := Load(fixtureDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for _, d := range docs {
			tokens += len(tok.Encode(d))
		}
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkDecodeCorpus decodes the ids of every corpus document per iteration.
func BenchmarkDecodeCorpus(b *testing.B) {
	tok, docs := gptj(b), corpus(b)
	ids := make([][]int, len(docs))
	tokens := 0
	for i, d := range docs {
		ids[i] = tok.Encode(d)
		tokens += len(ids[i])
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, x := range ids {
			if _, err := tok.Decode(x); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEncodeCorpusFamilies encodes every corpus document once per iteration with each
// trained family (warm cache), to compare the pipelines' speed with GPT-J's.
func BenchmarkEncodeCorpusFamilies(b *testing.B) {
	docs := corpus(b)
	bytes := 0
	for _, d := range docs {
		bytes += len(d)
	}
	for _, kind := range families {
		b.Run(kind, func(b *testing.B) {
			tok, err := Load(familyDir(b, kind))
			if err != nil {
				b.Fatal(err)
			}
			for _, d := range docs { // warm the cache, as BenchmarkEncodeCorpus's first pass does
				tok.Encode(d)
			}
			b.SetBytes(int64(bytes))
			b.ResetTimer()
			tokens := 0
			for i := 0; i < b.N; i++ {
				for _, d := range docs {
					tokens += len(tok.Encode(d))
				}
			}
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
