# The two quick-start commands: `make demo` and `make test`. Each works from a fresh clone with
# only python3: it creates .venv when missing and (re)installs the project only when
# pyproject.toml changed.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The demo: generate and check the synthetic street dataset, train the per-frame model (pix2pixHD)
# on it for DEMO_STEPS steps (a few minutes on 2 CPU cores; re-running resumes, so it is instant
# once done), then compare it on the held-out sequences with the per-class mean-colour baseline.
DEMO_STEPS ?= 300
demo: $(STAMP)
	$(PY) -m vid2vid check-data --config configs/demo_image.yaml
	$(PY) -m vid2vid train --config configs/demo_image.yaml --resume latest \
		--set train.max_steps=$(DEMO_STEPS) train.out_dir=runs/demo_image
	$(PY) tools/eval_image_model.py runs/demo_image/export
	@echo "Samples: runs/demo_image/samples/  Log: runs/demo_image/log.jsonl  Model: runs/demo_image/export/"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data/synthetic_demo runs/demo_image
