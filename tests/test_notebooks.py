"""The course notebooks: committed clean and parameterised, and run headlessly from top to bottom.

- Static checks: no outputs committed, exactly one cell tagged `parameters` holding literals only,
  a `seed` parameter, an "Open in Colab" badge, and an install cell that does something only on Colab.
- nbval: every notebook runs under `pytest --nbval-lax`. The notebooks are committed without outputs,
  so the cell tagged `nbval-check-output` in a notebook has nothing to be compared with; its expected
  output (EXPECTED below) is put into a copy of the notebook, which nbval then runs and checks.
- papermill: every notebook runs with `-p seed 3`, and its checked output changes where it depends on
  the seed.

Notebooks that load the shipped checkpoints are skipped, with the reason, while icrl_lab/checkpoints lacks
one. ICRL_LAB_NOTEBOOK_CHECKPOINTS=DIR runs them on the checkpoints in DIR instead (one folder per recipe).
"""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from icrl_lab.recipes import SHIPPED

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COURSE = ["00_welcome", "01_dark_worlds", "02_learning_histories", "03_noise_distillation", "04_training",
          "05_in_context_evaluation", "06_probing_attention"]
CHECKPOINTS = os.environ.get("ICRL_LAB_NOTEBOOK_CHECKPOINTS", "")
CELL_TIMEOUT = 600  # seconds; a notebook is meant to take 2 minutes in all

# The text output of each notebook's `nbval-check-output` cell with its default parameters. These cells
# summarise data made with numpy only (no training), rounded, so they are the same on every machine.
EXPECTED = {
    "01_dark_worlds": """\
train    16.492
test     16.750
Name: mean optimal return, dtype: float64""",
    "02_learning_histories": """\
histories                        65.000
steps_per_history              4000.000
total_steps                  260000.000
episodes_per_history            200.000
mean_return_first_episode         0.292
mean_return_last_episode         15.354
dtype: float64""",
    "03_noise_distillation": """\
histories                       130.000
steps_per_history              2000.000
total_steps                  260000.000
episodes_per_history            100.000
mean_return_first_episode         0.277
mean_return_last_episode          8.292
epsilon_floor                     0.412
dtype: float64""",
    "04_training": """\
histories                       520.000
steps_per_history               400.000
total_steps                  208000.000
episodes_per_history             20.000
mean_return_first_episode         0.337
mean_return_last_episode          8.252
epsilon_floor                     0.412
dtype: float64""",
    "05_in_context_evaluation": """\
optimal return             16.750
best policy in the data     8.453
held-out goals             16.000
dtype: float64""",
}
# Notebooks whose checked output depends on the seed (the others check figures that do not).
SEED_DEPENDENT = {"02_learning_histories", "03_noise_distillation", "04_training"}


def kernel_environment() -> dict:
    """The environment for a notebook's kernel: as a user's (the test session's matplotlib backend, Agg,
    would hide the figures), on one thread."""
    return {**{k: v for k, v in os.environ.items() if k != "MPLBACKEND"}, "OMP_NUM_THREADS": "1"}


def read(path):
    return nbformat.read(path, as_version=4)


def tagged(notebook, tag):
    return [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]


def text_output(cell) -> str:
    """What a cell printed or returned, as plain text."""
    parts = [output.get("text", "") if output.output_type == "stream" else output.get("data", {}).get("text/plain", "")
             for output in cell.get("outputs", [])]
    return "".join(parts).strip()


def missing_checkpoints(path) -> list:
    """The shipped checkpoints a notebook loads that are not in icrl_lab/checkpoints."""
    names = set()
    for cell in read(path).cells:
        if "load_shipped(" in cell.source or "load_or_reproduce(" in cell.source:
            names.update(re.findall(r'"((?:dark_room|key_to_door|bandit)_\w+)"', cell.source))
    return sorted(name for name in names if not (SHIPPED / name / "model.safetensors").is_file())


def parameters_for(path, **overrides) -> dict:
    """Papermill parameters for a run: the overrides, and the checkpoints folder if one is set."""
    declared = {target.id for statement in ast.parse(tagged(read(path), "parameters")[0].source).body
                for target in statement.targets}
    extra = {"checkpoints": CHECKPOINTS} if CHECKPOINTS and "checkpoints" in declared else {}
    return {**extra, **overrides}


def skip_without_checkpoints(path):
    missing = missing_checkpoints(path)
    if missing and not CHECKPOINTS:
        pytest.skip(f"{path.name} loads shipped checkpoints that icrl_lab/checkpoints lacks: {missing} (make them with "
                    f"`python -m icrl_lab reproduce NAME --out icrl_lab/checkpoints/NAME`, or set "
                    f"ICRL_LAB_NOTEBOOK_CHECKPOINTS to a folder holding them)")


def test_the_course_is_all_there():
    assert [path.stem for path in NOTEBOOKS] == COURSE
    assert set(EXPECTED) | SEED_DEPENDENT <= set(COURSE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_without_outputs(path):
    for cell in read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name} is committed with outputs: clear them (Kernel > Restart and Clear Outputs)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_one_parameters_cell_of_literals(path):
    cells = tagged(read(path), "parameters")
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged `parameters`, has {len(cells)}"
    names = []
    for statement in ast.parse(cells[0].source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
            and isinstance(statement.targets[0], ast.Name), f"{path.name}: only `name = literal` lines may be parameters"
        ast.literal_eval(statement.value)  # raises if the value is not a literal
        names.append(statement.targets[0].id)
    assert "seed" in names and len(names) == len(set(names))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_colab_badge_guarded_install_and_a_try_this(path):
    notebook = read(path)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert f"colab.research.google.com/github/icrl-lab/icrl_lab/blob/main/notebooks/{path.name}" in text
    assert "## Try this" in text
    installs = [cell for cell in notebook.cells if "pip install" in cell.source and cell.cell_type == "code"]
    assert len(installs) == 1 and 'if "google.colab" in sys.modules:' in installs[0].source
    assert len(tagged(notebook, "nbval-check-output")) <= 1
    assert notebook.cells.index(installs[0]) < notebook.cells.index(tagged(notebook, "parameters")[0])


def prepared_copy(path, folder: Path) -> Path:
    """A copy of the notebook with parameters injected (papermill, without running it) and the expected
    output of its checked cell put in, as nbval wants it."""
    import papermill

    copy = folder / path.name
    papermill.execute_notebook(str(path), str(copy), parameters=parameters_for(path), prepare_only=True,
                               progress_bar=False)
    notebook = read(copy)
    for cell in tagged(notebook, "nbval-check-output"):
        cell.execution_count = 1
        cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": EXPECTED[path.stem]},
                                               execution_count=1)]
    nbformat.write(notebook, copy)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_runs_under_nbval_with_checked_outputs(path, tmp_path):
    skip_without_checkpoints(path)
    copy = prepared_copy(path, tmp_path)
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
                          "--nbval-cell-timeout", str(CELL_TIMEOUT), "-q", "--rootdir", str(tmp_path), copy.name],
                         cwd=tmp_path, capture_output=True, text=True, env=kernel_environment())
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_runs_with_papermill_and_a_changed_seed(path, tmp_path, monkeypatch):
    import papermill

    skip_without_checkpoints(path)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # papermill's kernel inherits this process's environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    executed = tmp_path / path.name
    papermill.execute_notebook(str(path), str(executed), parameters=parameters_for(path, seed=3), cwd=str(tmp_path),
                               progress_bar=False, execution_timeout=CELL_TIMEOUT)
    notebook = read(executed)
    injected = tagged(notebook, "injected-parameters")
    assert len(injected) == 1 and "seed = 3" in injected[0].source
    for cell in tagged(notebook, "nbval-check-output"):
        if path.stem in SEED_DEPENDENT:
            assert text_output(cell) != EXPECTED[path.stem], "the seed should change this notebook's results"
        else:
            assert text_output(cell) == EXPECTED[path.stem]
