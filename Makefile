# Every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= resnet50
PRECISION ?= all
ENGINE_PRECISION ?= fp16
ARTIFACTS ?= artifacts

BENCH_ARGS ?=

.PHONY: install bench export engine test test-all lint clean

install: $(STAMP)

# torch is pinned to the CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -e '.[dev,openvino,loadgen,nncf,torchao,deploy,fleet]'
	@# bytecode on every core (pip compiles on one): 25 s against pip's 34 s on 2 cores; a file that does not compile is
	@# left to Python, as pip leaves it
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null
	touch $(STAMP)

# The main job on the built-in default: ResNet-50 exported (fp32, fp16, int8) if missing, then every backend and
# precision this machine can run, timed over batches 1 and 8, parity on every row; results in results/.
bench: $(STAMP)
	$(BIN)/rbench run $(BENCH_ARGS)

export: $(STAMP)
	$(BIN)/rbench export --model $(MODEL) --precision $(PRECISION) --out $(ARTIFACTS)

# A TensorRT engine (needs an NVIDIA GPU and 'pip install .[gpu]') from the newest $(MODEL) artifact, exported first
# if there is none; a second run reuses the engine while its key (ONNX, settings, TensorRT, GPU) is unchanged.
engine: $(STAMP)
	@dir=$$(ls -td $(ARTIFACTS)/$(MODEL)-*/ 2>/dev/null | head -n 1); \
	if [ -z "$$dir" ]; then \
		$(MAKE) --no-print-directory export && dir=$$(ls -td $(ARTIFACTS)/$(MODEL)-*/ | head -n 1); \
	fi; \
	$(BIN)/rbench build "$$dir" --precision $(ENGINE_PRECISION)

test: $(STAMP)
	$(BIN)/pytest -q

# Everything, the tests marked slow included (the ResNet-50 export's own tests: about a minute more).
test-all: $(STAMP)
	$(BIN)/pytest -q -m 'slow or not slow'

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check rbench tests
	$(BIN)/ruff format --check rbench tests

clean:
	rm -rf $(VENV) $(ARTIFACTS) results .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
