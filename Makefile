# The front door: `make demo` and `make test` work on a fresh clone (they create .venv themselves).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint fmt up down bench chaos soak clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m local.demo

up: $(STAMP)
	$(PY) -m local.cloud up

down: $(STAMP)
	$(PY) -m local.cloud down

lint: $(STAMP)
	$(PY) -m ruff check .

fmt: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadfile -q

bench: $(STAMP)
	$(PY) -m bench

chaos: $(STAMP)
	$(PY) -m local.chaos

soak: $(STAMP)
	$(PY) -m local.soak

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache

include deploy/deploy.mk
