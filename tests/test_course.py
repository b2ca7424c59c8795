"""Exercises and student copies (icrl_lab.course): the solutions pass their checks, the student copies
stop at each exercise until it is filled in, and the course names one repository everywhere.

The exercise cells are run here without a kernel (exec, one fresh namespace per exercise): each solution
cell and its check cell are written to stand alone, so this takes seconds. The whole notebooks, solutions
included, run under nbval and papermill in test_notebooks.py."""
import re

import nbformat
import pytest

from icrl_lab import course
from test_notebooks import NOTEBOOKS, read, tagged

EXERCISED = [path for path in NOTEBOOKS if path.stem[:2] != "00"]


def exercises(notebook):
    """(solution cell, check cell) pairs, each check the next code cell after its solution."""
    pairs, cells = [], notebook.cells
    for index, cell in enumerate(cells):
        if "solution" in cell.metadata.get("tags", []):
            following = next(c for c in cells[index + 1:] if c.cell_type == "code")
            assert "check" in following.metadata.get("tags", []), "a solution cell must be followed by its check cell"
            pairs.append((cell, following))
    return pairs


def test_strip_solution_keeps_the_frame_and_stubs_the_answer():
    source = "def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)"
    stripped = course.strip_solution(source)
    assert "return 2 * x" not in stripped and "'''doc'''" in stripped and stripped.endswith("print(f)")
    assert "    raise NotImplementedError(\"your turn:" in stripped
    with pytest.raises(ValueError, match="not closed"):
        course.strip_solution("### BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", EXERCISED, ids=lambda path: path.stem)
def test_each_notebook_has_an_exercise_whose_solution_passes_its_check(path):
    pairs = exercises(read(path))
    assert pairs, f"{path.name} needs a `solution` cell and a `check` cell"
    for solution, check in pairs:
        assert course.BEGIN in solution.source and course.END in solution.source
        namespace = {}
        exec(compile(solution.source, f"{path.stem}:solution", "exec"), namespace)
        exec(compile(check.source, f"{path.stem}:check", "exec"), namespace)


@pytest.mark.parametrize("path", EXERCISED, ids=lambda path: path.stem)
def test_student_copies_stop_at_the_exercise_until_it_is_filled_in(path):
    student = course.student_copy(read(path))
    for solution, check in exercises(student):
        assert course.BEGIN not in solution.source and course.STUB in solution.source
        namespace = {}
        with pytest.raises(NotImplementedError, match="your turn"):
            exec(compile(solution.source, f"{path.stem}:solution", "exec"), namespace)
            exec(compile(check.source, f"{path.stem}:check", "exec"), namespace)
    # Everything else is kept as it was.
    assert [cell.source for cell in student.cells if "solution" not in cell.metadata.get("tags", [])] == \
        [cell.source for cell in read(path).cells if "solution" not in cell.metadata.get("tags", [])]


def test_write_student_copies(tmp_path):
    written = course.write_student_copies(NOTEBOOKS[0].parent, tmp_path / "student")
    assert [path.name for path in written] == [path.name for path in NOTEBOOKS]
    assert not any(course.BEGIN in cell.source for path in written for cell in read(path).cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_one_repository_everywhere(path):
    notebook = read(path)
    text = "\n".join(cell.source for cell in notebook.cells)
    named = set(re.findall(r"github\.com/([\w.-]+/[\w.-]+)", text)) | set(re.findall(r"/github/([\w.-]+/[\w.-]+)/", text))
    assert named == {course.REPOSITORY}, f"{path.name} names {named}; the course's repository is {course.REPOSITORY}"
    assert course.colab_url(path.name) in text


@pytest.mark.parametrize("path", EXERCISED + [NOTEBOOKS[0]], ids=lambda path: path.stem)
def test_colab_install_stops_on_a_failed_clone_and_next_links_work_on_colab(path):
    notebook = read(path)
    (install,) = [cell for cell in notebook.cells if cell.cell_type == "code" and "pip install" in cell.source]
    assert f'REPOSITORY = "{course.REPOSITORY_URL}"' in install.source and "raise RuntimeError" in install.source
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    (following,) = re.findall(r"Next: \[(\w+)\]\(\1\.ipynb\)", text)
    assert course.colab_url(f"{following}.ipynb") in text, "the Next link needs its Colab form"
