# Two commands: `make run` (the whole system on this machine) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install lint

$(BIN)/mainspring: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/mainspring

install: $(BIN)/mainspring

run: install
	$(BIN)/mainspring up

# Most tests run in 3 processes (each file in one); timing-sensitive ones run alone after.
# test_scheduler_worker.py runs in a process of its own: after other scheduler tests in one
# process a Redis connection in it answers PING wrongly (not understood yet; see the notes).
ISOLATED := tests/integration/test_scheduler_worker.py
test: install
	$(BIN)/pytest -n 3 --dist loadfile -m "not (serial or e2e or browser)" --ignore=$(ISOLATED)
	$(BIN)/pytest -m "serial or e2e or browser" --ignore=$(ISOLATED)
	$(BIN)/pytest $(ISOLATED)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
