# Two entry points: `make demo` (the main job) and `make test`. Both build the
# virtual environment on first use; later runs reuse it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a GPU user sets TORCH_SPEC (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: demo test bench mutants clean-venv

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

# Mutation testing (docs/mutants.md): each mutant of the study's statistics, pairing and
# claim rules against the fast study tests (tests/study/test_planted_study.py, test_stats.py,
# test_claims.py). Not part of `make test`: it takes long. Results stay in mutants/.
MUTANTS ?= 'salclass.study.stats.x_seeds_images_t__*' 'salclass.study.stats.x_holm__*' \
	'salclass.study.stats.x_decide__*' 'salclass.study.stats.x_verdict__*' 'salclass.study.stats.x_equivalent__*' \
	'salclass.study.results.x_collect__*' 'salclass.study.report.x_claim_status__*' \
	'salclass.study.report.x_saliency_experiment__*' 'salclass.study.report.x__direction__*' \
	'salclass.study.report.x__answer__*'
MUTANT_JOBS ?= 2

mutants: $(STAMP)
	$(VENV)/bin/mutmut run --max-children $(MUTANT_JOBS) $(MUTANTS)
	$(VENV)/bin/mutmut results | grep -v ': not checked$$' || true

clean-venv:
	rm -rf $(VENV)
