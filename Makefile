# seqcli: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WARM := $(VENV)/.kernels-cached
BYTECODE := $(VENV)/.bytecode
BENCH_STAMP := $(VENV)/.bench-installed
DEMO_INPUT := $(or $(TMPDIR),/tmp)/seqcli-demo-$(shell echo $$PPID).npy
DEMO_OUT ?= demo-output

.PHONY: install demo test lint bench digits clean browser

install: $(STAMP) $(BYTECODE) $(WARM)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,dask]'
	touch $(STAMP)

# seqcli's own bytecode, written even where PYTHONDONTWRITEBYTECODE is set (pip writes it
# for a regular install; without it every command would compile seqcli's source again)
$(BYTECODE): $(STAMP) $(shell find seqcli -name '*.py')
	$(BIN)/python -m compileall -q seqcli
	touch $(BYTECODE)

# every kernel compiled into numba's cache (every layer's examples run); again after a kernel
# or layer source changes
$(WARM): $(STAMP) $(wildcard seqcli/kernels/*.py seqcli/layers/*.py) seqcli/warmup.py
	$(BIN)/python -m seqcli.warmup
	touch $(WARM)

demo: install
	$(BIN)/seqcli summary configs/guide_convnet.yaml
	$(BIN)/seqcli summary configs/transfer_learning.yaml --show-trainable --expand-nested
	$(BIN)/python -c "import numpy as np; np.save('$(DEMO_INPUT)', np.random.default_rng(0).random((8, 250, 250, 3), dtype=np.float32) * 255)"
	@echo "# the guide's convnet on 8 generated 250x250 RGB images: the 3 highest scores of each"
	$(BIN)/seqcli predict configs/guide_convnet.yaml $(DEMO_INPUT) --top-k 3
	mkdir -p $(DEMO_OUT)
	$(BIN)/seqcli plot configs/transfer_learning.yaml --expand-nested --show-trainable --show-activations -o $(DEMO_OUT)/model.svg
	$(BIN)/seqcli report configs/transfer_learning.yaml $(DEMO_INPUT) -q -o $(DEMO_OUT)/report.html
	rm -f $(DEMO_INPUT)
	@echo "# the transfer-learning model's diagram: $(CURDIR)/$(DEMO_OUT)/model.svg"
	@echo "# its report (diagram, layers, weights, feature maps of the first image): $(CURDIR)/$(DEMO_OUT)/report.html"

test: install browser
	$(BIN)/python -m pytest

# Debian's chromium, which the HTML report's browser test loads the page in: installed when it
# is missing and apt-get can run (as root); without it that one test is skipped
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "note: chromium could not be installed: the report's browser test will be skipped"; \
	else \
		echo "note: no chromium and no apt-get as root: the report's browser test will be skipped"; \
	fi

digits: install
	PATH="$(CURDIR)/$(BIN):$$PATH" examples/digits/run.sh $(or $(WORK),digits-run)

lint: install
	$(BIN)/ruff check seqcli tests

# the training peers `make bench` runs (Keras on JAX, and PyTorch where a CPU build of it is
# on this machine's disk: pip's find-links, without the index, so that no multi-GB CUDA build
# is ever downloaded), each in a process of its own; `make test` never needs them
TORCH ?= torch==2.13.0
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,dask,bench]'
	@if $(BIN)/pip install --quiet --no-index --no-deps '$(TORCH)' 2>/dev/null; then \
		$(BIN)/pip install --quiet '$(TORCH)'; \
	else \
		echo "note: no CPU build of $(TORCH) on this machine's disk: the PyTorch rows are not measured"; \
	fi
	touch $(BENCH_STAMP)

# Side by side with onnxruntime, numpy, Keras on JAX (and PyTorch where installed), written to
# bench/RESULTS.md with issue 18's goals (about 6 minutes). OpenBLAS overrides that this
# workplace may set (an older CPU kernel) are dropped for this run only, and reported.
bench: install $(BENCH_STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
