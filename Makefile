# simplescope — `make test` and `make demo` do all set-up from a fresh clone.
SHELL := /bin/bash
PY_BOOT ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
LIB     := build/lib
SHIM    := $(LIB)/libsimplescope_shim.so
GOLIB   := $(LIB)/libsimplescope.so
GO_SRC  := $(shell find core capi internal -name '*.go' -not -name '*_test.go' 2>/dev/null) go.mod go.sum
export SIMPLESCOPE_PYTHON := $(abspath $(PY))
export SIMPLESCOPE_LIB_DIR := $(abspath $(LIB))
# Go's test binaries and the Python package load libtorch from the venv.
GOFLAGS_TEST ?= -count=1

.PHONY: all venv build shim golib test gotest pytest demo check-header wheel bench clean fuzz-short

all: build

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

shim: $(SHIM)
$(SHIM): core/torch/csrc/shim.cpp core/torch/csrc/shim.h python/simplescope/_shimbuild.py $(VENV)/.installed
	$(PY) python/simplescope/_shimbuild.py core/torch/csrc $(SHIM)

golib: $(GOLIB)
$(GOLIB): $(SHIM) $(GO_SRC) capi/simplescope.h
	go build -buildmode=c-shared -o $(GOLIB) ./capi

build: $(GOLIB)

# The public header must compile as plain C (C99, no warnings), and a C program must link.
check-header: $(GOLIB)
	mkdir -p build/check
	printf '#include "simplescope.h"\nint main(void){ ss_status st = SS_OK; return (int)st + (int)ss_live_tensors(); }\n' > build/check/main.c
	@# the DLPack functions: with the header alone (struct DLManagedTensor incomplete) and after
	@# the real dlpack.h (the one torch ships), whose struct the forward declaration must match
	printf '#include "simplescope.h"\nint dl_check(uint64_t id, char **err) {\n  struct DLManagedTensor *t = NULL;\n  uint64_t back = 0;\n  int st = ss_tensor_export(id, &t, err);\n  if (st != SS_OK) return st;\n  st = ss_tensor_import(t, &back, err);\n  ss_tensor_release(back);\n  return st;\n}\n' > build/check/dlpack.c
	cc -std=c99 -Wall -Wextra -Werror -pedantic -Icapi -c build/check/dlpack.c -o build/check/dlpack.o
	printf '#include <ATen/dlpack.h>\n#include "simplescope.h"\nint dl_check2(uint64_t id, char **err) {\n  DLManagedTensor *t = NULL;\n  uint64_t back = 0;\n  int st = ss_tensor_export(id, &t, err);\n  if (st != SS_OK) return st;\n  if (t->dl_tensor.ndim < 0) { t->deleter(t); return -1; }\n  st = ss_tensor_import(t, &back, err);\n  ss_tensor_release(back);\n  return st;\n}\n' > build/check/dlpack2.c
	cc -std=c99 -Wall -Wextra -Werror -pedantic -I"$$($(PY) -c 'import torch.utils.cpp_extension as c; print(c.include_paths()[0])')" -Icapi -c build/check/dlpack2.c -o build/check/dlpack2.o
	cc -std=c99 -Wall -Wextra -Werror -pedantic -Icapi -c build/check/main.c -o build/check/main.o
	cc build/check/main.o build/check/dlpack.o build/check/dlpack2.o -L$(LIB) -lsimplescope -Wl,-rpath,$(abspath $(LIB)) -o build/check/main
	@echo "capi/simplescope.h compiles as plain C and links"

gotest: $(GOLIB)
	go vet ./...
	go test $(GOFLAGS_TEST) ./...

pytest: $(GOLIB)
	PYTHONPATH=$(abspath python) $(PY) -m pytest -q tests/python

# The full suite: the Go and Python tests, the race detector on the pure-Go packages, a few
# seconds of every fuzz target, and the wheel installed into a fresh venv.
test: venv build check-header gotest race pytest gpu-check-dry wheel-check
	$(MAKE) fuzz-short FUZZTIME=3s FUZZTIME_API=15s

# bench/gpu_check.py's code on the CPU with a tiny model (the full run needs a GPU: README,
# "Checking a GPU machine"); ~20 s.
.PHONY: gpu-check-dry gpu-check-bundle
gpu-check-dry: $(GOLIB)
	$(PY) bench/gpu_check.py --config tiny --device cpu --threads 2

# What a bare GPU machine (torch and transformers only) needs to run bench/gpu_check.py.
gpu-check-bundle: $(GOLIB)
	mkdir -p dist
	tar czf dist/gpu-check.tar.gz --exclude '__pycache__' python bench/*.py testdata/corpus \
		$(LIB)/libsimplescope.so $(LIB)/libsimplescope_shim.so $(LIB)/libsimplescope_shim.so.torch-version core/torch/csrc
	@echo "dist/gpu-check.tar.gz: copy it to the GPU machine, then: tar xzf gpu-check.tar.gz && python bench/gpu_check.py"

demo: venv build
	PYTHONPATH=$(abspath python) $(PY) -m simplescope demo --out demo-out

wheel: venv build
	$(PY) -m pip wheel --no-build-isolation --no-deps -w dist .

# Builds the wheel (isolated, like a user's `python -m build`), installs it into a fresh venv
# without Go, and checks import, a forward pass against HF and the shim rebuild (~1-2 min).
.PHONY: wheel-check
wheel-check: venv
	tests/packaging/check_wheel.sh

# Engine benchmarks on random GPT-J models (made by bench/make_model.py, cached); BENCH_ARGS e.g. -bench Evaluate/tiny -benchtime 1x
BENCH_ARGS ?= -bench . -benchtime 1x
bench: $(GOLIB)
	go test -run '^$$' $(BENCH_ARGS) ./bench/

clean:
	rm -rf build dist demo-out

# Race detector on the Go packages that do not need libtorch (reliability, docs/reliability.md).
RACE_PKGS := ./core/tokenizer ./core/data ./core/weights ./core/config
.PHONY: race
race:
	go test -race -count=1 $(RACE_PKGS)

# Every fuzz target for FUZZTIME each (seeds in testdata/fuzz run in plain `go test` anyway).
# Longer runs: make fuzz-short FUZZTIME=10m, or one target: go test -run '^$$' -fuzz '^FuzzCall$$' ./core/api
# FuzzCall gets longer (FUZZTIME_API): it first makes its test model and replays its corpus.
FUZZTIME ?= 5s
FUZZTIME_API ?= 30s
FUZZ_TARGETS := core/weights:FuzzSafetensorsHeader core/weights:FuzzTorchZip core/weights:FuzzUnpickle \
	core/data:FuzzDecodeJSONLine core/tokenizer:FuzzEncodeDecode core/tokenizer:FuzzLoadJSON \
	core/config:FuzzParseGPTJConfig core/config:FuzzParseDecoder
fuzz-short: $(GOLIB)
	tools/fuzz_short.sh $(FUZZTIME) $(FUZZTIME_API) $(FUZZ_TARGETS) core/api:FuzzCall
