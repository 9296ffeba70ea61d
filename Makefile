# Two entry points: `make demo` (the main job) and `make test`. Both build the
# virtual environment on first use; later runs reuse it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a GPU user sets TORCH_SPEC (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The full Imagenette store (for `salclass train` on all of it; skipped once complete), then the quick study.
demo: $(STAMP)
	{ $(VENV)/bin/salclass inspect out/imagenette-144/train && \
	  $(VENV)/bin/salclass inspect out/imagenette-144/val; } >/dev/null 2>&1 || \
		$(VENV)/bin/salclass prepare $(DATA)/imagenette out/imagenette-144 --size 144
	$(VENV)/bin/salclass inspect out/imagenette-144/train --json
	$(VENV)/bin/salclass study --config configs/study/quick.yaml --out out/quick

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/loader.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/verdicts.py

clean-venv:
	rm -rf $(VENV)
