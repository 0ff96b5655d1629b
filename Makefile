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

demo: $(STAMP)
	$(PY) -m vid2vid check-data --config configs/demo.yaml
	@echo "Training on this dataset comes next: vid2vid train --config configs/demo.yaml"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data/synthetic_demo
