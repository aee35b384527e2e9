# Two commands do everything on a fresh machine: `make check` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: check test bench lint mutate venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,fleet]'
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/envaudit check --golden golden/reference

# Two workers (pytest-xdist): the suite is mostly TensorFlow subprocesses, which leave a core idle.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python tools/bench.py

mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

lint: $(STAMP)
	$(BIN)/ruff check envaudit tests tools

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mutate .hypothesis
