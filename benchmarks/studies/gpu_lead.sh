#!/usr/bin/env bash
# A short GPU session's worth of a study candidate (results README, "On a GPU"): train it for MINUTES,
# sized to its own speed, choose its copy on the validation goals, and measure that copy once on the test
# goals under the adeps protocol and against a perfect fit. What is kept is written to $OUT (5 files: the
# run's log, the test figures as printed and as evaluation.json and figure.png, the agreement line); the
# checkpoints stay in runs/gpu_lead, and running the script again goes on with an interrupted run there.
#
#   OUT=DIR bash benchmarks/studies/gpu_lead.sh MINUTES [CANDIDATE] [SEED]   (default ad_d512_context400, seed 0)
#
# On a machine with PyTorch but not gymnasium, and no network, put gymnasium's and farama-notifications'
# wheels in .whl: they are installed first. Without a GPU the same script runs on the CPU (to check it).
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: bash benchmarks/studies/gpu_lead.sh MINUTES [CANDIDATE] [SEED], with OUT naming the folder for the results"
minutes=${1:?$usage}
name=${2:-ad_d512_context400}
seed=${3:-0}
out=${OUT:?$usage}
runs=runs/gpu_lead
export PYTHONUNBUFFERED=1
if ! python3 -c "import gymnasium" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "gymnasium is missing and .whl holds no wheels of it: see benchmarks/studies/results/README.md, \"On a GPU\"" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
study=benchmarks/studies/adeps_greedy.py
log=$runs/$name-seed$seed.jsonl
mkdir -p "$out"
if [ -f "$log" ]; then  # run again after an interruption: go on with the run from its last finished stretch
    python3 $study "$name" --resume --seed "$seed" --out $runs
else
    python3 $study "$name" --minutes "$minutes" --seed "$seed" --out $runs
fi
cp "$log" "$out/"
chosen=$(python3 $study --chosen "$log")
echo "chosen on the validation goals: $chosen"
python3 -m icrl_lab evaluate "$chosen" --protocol adeps --seed 1 --save "$out/test" | tee "$out/test.jsonl"
# Against the perfect fit of the candidate's data, where the kit has one: a whole-history window's
# (--agreement) or the paper's pace's (--agreement-paper-pace).
agreement=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks/studies'); from adeps_greedy import CANDIDATES, PAPER_PACE
data, model, _ = CANDIDATES['$name']
print('--agreement' if model.get('window_steps') == data['num_steps'] else
      '--agreement-paper-pace' if data['num_steps'] == PAPER_PACE['num_steps'] else '')")
if [ -n "$agreement" ]; then
    python3 $study $agreement "$chosen" | tee "$out/agreement.jsonl"
else
    echo "no perfect fit of $name's data: no agreement figures"
fi
