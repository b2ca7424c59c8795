"""The command line: collect writes a dataset and prints its summary; bad input writes nothing."""
import json
import subprocess
import sys

from icrl_lab.histories import load_histories


def run(*args):
    return subprocess.run([sys.executable, "-m", "icrl_lab", *args], capture_output=True, text=True)


def test_collect_writes_a_dataset_and_prints_its_summary(tmp_path):
    out = tmp_path / "data.h5"
    result = run("collect", "--num-steps", "200", "--histories-per-task", "2", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["histories"] == 130 and summary["epsilon_floor"] > 0
    data = load_histories(out)
    assert data.metadata["command"].startswith("python -m icrl_lab collect --num-steps 200")
    assert data.metadata["seed"] == 3


def test_bad_parameter_gives_a_clear_error_and_writes_nothing(tmp_path):
    out = tmp_path / "data.h5"
    result = run("collect", "--max-perf", "1.5", "--out", str(out))
    assert result.returncode == 2
    assert "max_perf=1.5 is not allowed: it must lie in (0, 1]" in result.stderr
    assert not out.exists()
