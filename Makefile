# Every target does its own set-up: a fresh machine needs only Python 3.10+ and make.
# torch is pinned first so pip takes the CPU build instead of pulling several GB of CUDA wheels.
PYTHON ?= python3
VENV := .venv
TRANSFORMERS4_VENV := .venv-tf4
TORCH := torch==2.13.0

.PHONY: setup test demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q $(TORCH)
	$(VENV)/bin/python -m pip install -q -e ".[dev,space]"
	touch $@

# A second environment with the last transformers 4.x release: saved folders must load there too.
$(TRANSFORMERS4_VENV)/.installed:
	$(PYTHON) -m venv $(TRANSFORMERS4_VENV)
	$(TRANSFORMERS4_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRANSFORMERS4_VENV)/bin/python -m pip install -q $(TORCH) "transformers==4.57.6" safetensors
	touch $@

test: setup $(TRANSFORMERS4_VENV)/.installed
	$(VENV)/bin/python -m pytest

# The main job: RTD pre-training of the tiny model on the built-in genome, a few minutes on a 2-core CPU.
demo: setup
	$(VENV)/bin/accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		training/train_rtd.py --config training/configs/tiny_cpu.yaml
