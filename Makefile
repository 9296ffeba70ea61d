# `make demo` (the main job) and `make test`; `make bench`, `make bench-study` and `make calibrate` re-measure
# what docs/benchmarks.md records. Each builds the virtual environment on first use; later runs reuse it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a GPU user sets TORCH_SPEC (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# The shared data: DATA/imagenette (classification), DATA/osie (eye fixations); every step of `make demo` reads it.
DATA ?= ../shared/data

.PHONY: demo test bench bench-study calibrate mutants clean-venv

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
	$(VENV)/bin/salclass study --config configs/study/quick.yaml --out out/quick \
		--set data.source=$(DATA)/imagenette --set saliency.eval_data=$(DATA)/osie

test: $(STAMP)
	$(PY) -m pytest -q

# The speed benchmarks: the loader, training steps (fp32, and bf16 where the CPU has it natively), saliency maps/s.
bench: $(STAMP)
	$(PY) benchmarks/loader.py --src $(DATA)/imagenette
	$(PY) benchmarks/train_speed.py --src $(DATA)/imagenette
	$(PY) benchmarks/predict_speed.py --model fcn,default --precisions fp32 --images 256
	$(PY) benchmarks/threads_or_jobs.py

# The quick study run twice, with --jobs 1 and with --jobs 2, one thread per run.
bench-study: $(STAMP)
	$(PY) benchmarks/study_parallel.py

# The statistics, not a speed: false-verdict rates of the study's rule on simulated null studies.
calibrate: $(STAMP)
	$(PY) benchmarks/verdicts.py

# Mutation testing (docs/mutants.md): each mutant of the study's statistics, pairing and
# claim rules against the fast study tests (tests/study/test_planted_study.py, test_stats.py,
# test_moderated.py, test_claims.py). Not part of `make test`: it takes long. Results stay in mutants/.
MUTANTS ?= 'salclass.study.stats.x_seeds_images_t__*' 'salclass.study.stats.x_holm__*' \
	'salclass.study.stats.x_noise_parts__*' 'salclass.study.stats.x_t_test__*' \
	'salclass.study.moderation.x__trigamma_inverse__*' 'salclass.study.moderation.x_fit_prior__*' \
	'salclass.study.moderation.x_moderated__*' 'salclass.study.moderation.x_moderate__*' \
	'salclass.study.moderation.x_family_test__*' \
	'salclass.study.stats.x_decide__*' 'salclass.study.stats.x_verdict__*' 'salclass.study.stats.x_equivalent__*' \
	'salclass.study.results.x_collect__*' 'salclass.study.claims.x_claim_status__*' \
	'salclass.study.claims.x_saliency_experiment__*' 'salclass.study.claims.x_direction__*' \
	'salclass.study.claims.x_answer__*' 'salclass.study.claims.x_attribute_gain__*'
MUTANT_JOBS ?= 2

mutants: $(STAMP)
	$(VENV)/bin/mutmut run --max-children $(MUTANT_JOBS) $(MUTANTS)
	$(VENV)/bin/mutmut results | grep -v ': not checked$$' || true

clean-venv:
	rm -rf $(VENV)
