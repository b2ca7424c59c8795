"""The course as taught: where its repository lives, and student copies of its notebooks.

Exercises follow nbgrader's convention. A code cell tagged `solution` holds the answer between a
`### BEGIN SOLUTION` line and an `### END SOLUTION` line; the cell tagged `check` after it asserts
that the answer is right and says so. `student_copy` replaces each such block by
`raise NotImplementedError("your turn: ...")`, at the block's indentation, and keeps everything else
(the checks included), so a student's copy stops at each exercise until it is filled in.

    python -m icrl_lab.course student --out student/    (or `make student`)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

# The one place the course names its repository: the notebooks' Colab badges, install cells and links
# use it, and tests/test_notebooks.py checks that they do.
REPOSITORY = "icrl-lab/icrl_lab"
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("your turn: write this part, then run the check below")'


def colab_url(notebook: str) -> str:
    """The address that opens one of the course's notebooks (e.g. "01_dark_worlds.ipynb") on Colab."""
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook}"


def strip_solution(source: str) -> str:
    """A solution cell's source with every BEGIN/END SOLUTION block replaced by a NotImplementedError stub."""
    lines, out, inside = source.splitlines(), [], False
    for number, line in enumerate(lines, start=1):
        if line.strip() == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution block")
            inside = True
            out.append(line[:len(line) - len(line.lstrip())] + STUB)
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a solution block is not closed: add an {END} line")
    return "\n".join(out)


def exercise_cells(notebook, tag: str) -> list:
    return [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]


def student_copy(notebook):
    """A copy of a notebook (nbformat node) with its solutions stubbed out and its outputs cleared."""
    copy = nbformat.from_dict(notebook)
    for cell in copy.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if "solution" in cell.metadata.get("tags", []):
            if BEGIN not in cell.source:
                raise ValueError(f"a cell tagged `solution` has no {BEGIN} block:\n{cell.source[:200]}")
            cell.source = strip_solution(cell.source)
    return copy


def write_student_copies(notebooks: Path, out: Path) -> list[Path]:
    """Student copies of every course notebook (NN_name.ipynb) in `notebooks`, written into `out`."""
    paths = sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {notebooks}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        target = out / path.name
        nbformat.write(student_copy(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m icrl_lab.course", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write student copies: solutions stubbed out, checks kept")
    student.add_argument("--notebooks", default="notebooks", help="the folder of the course notebooks")
    student.add_argument("--out", default="student", help="where the student copies go")
    args = parser.parse_args(argv)
    written = write_student_copies(Path(args.notebooks), Path(args.out))
    solutions = sum(len(exercise_cells(nbformat.read(path, as_version=4), "solution")) for path in written)
    print(f"{len(written)} student notebooks in {args.out}/, {solutions} exercises to fill in")


if __name__ == "__main__":
    main()
