# seqcli: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m seqcli.warmup
	touch $(STAMP)

demo: install
	$(BIN)/seqcli summary configs/guide_convnet.yaml
	$(BIN)/seqcli summary configs/transfer_learning.yaml --show-trainable --expand-nested
	$(BIN)/python -c "import numpy as np; np.save('/tmp/seqcli-demo-input.npy', np.random.default_rng(0).random((2, 4), dtype=np.float32))"
	$(BIN)/seqcli predict configs/dense_stack.yaml /tmp/seqcli-demo-input.npy --top-k 2

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check seqcli tests

bench: install
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .pytest_cache
