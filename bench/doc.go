// Package bench holds simplescope's benchmarks: Go benchmarks of the Patchscope engine on random
// GPT-J configurations over documents of the sample corpus (testdata/corpus) (bench_test.go, items/s where an item
// is one (prompt, layer, method)), and the side-by-side scripts that time the same experiment
// with TransformerLens (the published simplescope loop), with the Patchscopes paper's batched
// HF-hook code structure, and with simplescope's Python API (side_by_side.py,
// gpu_side_by_side.py). Random models are made by make_model.py and cached.
//
//	make build && go test -run '^$' -bench . -benchtime 1x ./bench/
package bench
