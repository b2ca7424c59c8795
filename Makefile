# Two commands on a fresh machine: `make run` (the main job) and `make test` (the test suite).
# Both create .venv and install the kit into it first. torch is pinned to 2.13.0 so that pip takes
# the CPU build already on these machines instead of downloading several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0

.PHONY: run test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The course: every notebook executed in order into a timestamped folder under runs/, with a summary.
run: $(STAMP)
	$(BIN)/python -m icrl_lab course --out runs/course-$$(date +%Y%m%d-%H%M%S)

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/python -m pytest; status=$$?; if [ $$status -eq 5 ]; then exit 0; fi; exit $$status

clean:
	rm -rf $(VENV) runs .pytest_cache
