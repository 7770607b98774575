# seqcli: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WARM := $(VENV)/.kernels-cached
BYTECODE := $(VENV)/.bytecode
DEMO_INPUT := $(or $(TMPDIR),/tmp)/seqcli-demo-$(shell echo $$PPID).npy

.PHONY: install demo test lint bench digits clean

install: $(STAMP) $(BYTECODE) $(WARM)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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
	rm -f $(DEMO_INPUT)

test: install
	$(BIN)/python -m pytest

digits: install
	PATH="$(CURDIR)/$(BIN):$$PATH" examples/digits/run.sh $(or $(WORK),digits-run)

lint: install
	$(BIN)/ruff check seqcli tests

# Side by side with onnxruntime and numpy, written to bench/RESULTS.md (a few minutes). OpenBLAS
# overrides that this workplace may set (an older CPU kernel) are dropped for this run only.
bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
