# Two commands do all the set-up themselves on a fresh machine with Python 3.11:
#   make demo   release every assignment, grade four demo students, print the gradebook
#   make test   lint and the full test suite
# Both create .venv and install the course (staff set-up, editable) into it on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint release check bench student-wheel clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sit471 demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .

release: $(STAMP)
	$(BIN)/sit471 release --all

check: $(STAMP)
	$(BIN)/sit471 release --all --check

bench: $(STAMP)
	$(BIN)/python benchmarks/notebook_times.py

# The wheel students install: the library without sit471/reference.
student-wheel: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) demo-out grading-out dist build *.egg-info
