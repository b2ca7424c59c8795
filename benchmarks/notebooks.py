"""Run time and peak memory of every course notebook, as a Binder or CI user meets them.

Each notebook is executed headlessly with papermill (its default parameters, so the shipped
checkpoints), one at a time; the kernel's resident memory is sampled every 0.1 s and its peak kept.
Targets: <= 2 minutes and <= 1.5 GB each, <= 10 minutes for the whole course on a 2-core CPU.
The last line printed is one JSON object.

    python benchmarks/notebooks.py [--notebooks notebooks]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def run(notebook: Path, out_dir: Path) -> tuple[float, float]:
    """Execute one notebook; return (seconds, peak MB of the kernel and papermill together)."""
    started = time.perf_counter()
    process = psutil.Popen([sys.executable, "-m", "papermill", str(notebook), str(out_dir / notebook.name),
                            "--cwd", str(notebook.parent), "--no-progress-bar"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.1)
    if process.returncode != 0:
        raise RuntimeError(f"{notebook} failed:\n{process.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - started, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", default=str(Path(__file__).resolve().parent.parent / "notebooks"))
    args = parser.parse_args()
    result = {"benchmark": "notebooks", "notebooks": {}}
    with tempfile.TemporaryDirectory() as out:
        for notebook in sorted(Path(args.notebooks).glob("[0-9][0-9]_*.ipynb")):
            seconds, peak = run(notebook, Path(out))
            result["notebooks"][notebook.stem] = {"seconds": round(seconds, 1), "peak_mb": round(peak)}
            print(f"{notebook.stem:28s} {seconds:6.1f} s  {peak:6.0f} MB", flush=True)
    result["total_seconds"] = round(sum(n["seconds"] for n in result["notebooks"].values()), 1)
    result["max_peak_mb"] = max(n["peak_mb"] for n in result["notebooks"].values())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
