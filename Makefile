# The README's two set-up commands are `make demo` (main job) and `make test` (tests + lint).
# Both depend on `make install`, which builds .venv from scratch on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install install-monailabel test lint demo clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt constraints.txt setup.py
	$(PY) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Optional MONAI Label extra (no-deps: monailabel's own pins would pull CUDA torch); CI installs it for its tests.
install-monailabel: $(STAMP)
	$(PIP) install -q --no-deps -c constraints.txt -r requirements-monailabel.txt

lint: install
	$(BIN)/ruff check dpe_monai tests benchmarks bundles setup.py
	$(BIN)/ruff format --check dpe_monai tests benchmarks bundles setup.py

test: lint install-monailabel
	$(BIN)/python -m pytest -q --durations=15 tests

demo: install
	$(BIN)/dpe-monai demo

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
