# Every target does its own set-up: a fresh machine needs only Python 3.10+ and make.
# torch is installed first and on its own, so that TORCH_INDEX can say where it comes from (see below).
PYTHON ?= python3
VENV := .venv
TRANSFORMERS4_VENV := .venv-tf4
TRANSFORMERS_TESTS := .transformers-tests
TORCH := torch==2.13.0
# A CPU-only machine: TORCH_INDEX=https://download.pytorch.org/whl/cpu keeps pip from pulling the CUDA build.
TORCH_INDEX ?=
TORCH_SOURCE := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: setup lint format test demo transformers-tests

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(TORCH) $(TORCH_SOURCE)
	$(VENV)/bin/python -m pip install -q -e ".[dev,space]"
	touch $@

# A second environment with the last transformers 4.x release: saved folders must load there too.
$(TRANSFORMERS4_VENV)/.installed:
	$(PYTHON) -m venv $(TRANSFORMERS4_VENV)
	$(TRANSFORMERS4_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRANSFORMERS4_VENV)/bin/python -m pip install -q $(TORCH) $(TORCH_SOURCE)
	$(TRANSFORMERS4_VENV)/bin/python -m pip install -q "transformers==4.57.6" safetensors
	touch $@

# transformers' own common model tests (tests/test_modeling_common.py) ship only in its source distribution: fetch
# the one of the installed version. Without the package index the test module that runs them skips, saying so.
$(TRANSFORMERS_TESTS)/.fetched: $(VENV)/.installed
	rm -rf $(TRANSFORMERS_TESTS) && mkdir -p $(TRANSFORMERS_TESTS)
	-$(VENV)/bin/python -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d $(TRANSFORMERS_TESTS) \
		"transformers==$$($(VENV)/bin/python -c 'import transformers; print(transformers.__version__)')" \
		&& tar xzf $(TRANSFORMERS_TESTS)/transformers-*.tar.gz -C $(TRANSFORMERS_TESTS) --wildcards '*/tests/*' \
		&& rm $(TRANSFORMERS_TESTS)/transformers-*.tar.gz
	touch $@

transformers-tests: $(TRANSFORMERS_TESTS)/.fetched

# Lint and format are checked as part of the tests; `make format` rewrites the code in the project's style.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint $(TRANSFORMERS4_VENV)/.installed $(TRANSFORMERS_TESTS)/.fetched
	$(VENV)/bin/python -m pytest

# The main job: RTD pre-training of the tiny model on the built-in genome, a few minutes on a 2-core CPU. Run again,
# it starts over (--overwrite; without it nucel pretrain refuses a folder that holds a run).
demo: setup
	$(VENV)/bin/accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		training/train_rtd.py --config training/configs/tiny_cpu.yaml --overwrite
