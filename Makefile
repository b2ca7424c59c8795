# Two commands on a fresh machine: `make run` (the main job) and `make test` (the test suite).
# Both create .venv and install the kit into it first: `make run` with the course extras, `make test`
# with the test extras too. torch is installed first, pinned to 2.13.0, from the index in TORCH_INDEX
# when one is given (e.g. `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu` for the CPU
# build), else from pip's own configuration: see "Quick start" in README.md.
PYTHON ?= python3
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
TORCH_STAMP := $(VENV)/.torch-stamp
COURSE_STAMP := $(VENV)/.course-stamp
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install student clean

install: $(STAMP)

$(TORCH_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	touch $@

# The kit and what the course needs (JupyterLab, papermill).
$(COURSE_STAMP): pyproject.toml $(TORCH_STAMP)
	$(BIN)/python -m pip install -q -e '.[course]'
	touch $@

# Everything: the course and the test suite.
$(STAMP): pyproject.toml $(COURSE_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The course: every notebook executed in order into a timestamped folder under runs/, with a summary.
run: $(COURSE_STAMP)
	$(BIN)/python -m icrl_lab course --out runs/course-$$(date +%Y%m%d-%H%M%S)

# Student copies of the notebooks in student/: each exercise's solution replaced by a "your turn" stub,
# its check kept (icrl_lab/course.py).
student: $(COURSE_STAMP)
	$(BIN)/python -m icrl_lab.course student --notebooks notebooks --out student

# pytest exits 5 when it collects no test: that is not a failure of the suite.
test: $(STAMP)
	$(BIN)/python -m pytest; status=$$?; if [ $$status -eq 5 ]; then exit 0; fi; exit $$status

clean:
	rm -rf $(VENV) runs student .pytest_cache
