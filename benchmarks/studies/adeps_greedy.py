"""Which training choices make AD's own greedy policy improve in context on AD^eps data?

Every candidate trains on the histories of the fitting goals (57 of the 65 Dark Room training goals,
or 950 of the 1000 Key-to-Door training tasks) and is scored on the held-out validation tasks of the
training split (8 goals, 50 Key-to-Door tasks). The test tasks are never looked at. Each candidate logs,
every `eval_every` updates, the greedy in-context figures (the AD^eps protocol) and sampling at T=1.

    python benchmarks/studies/adeps_greedy.py --list
    python benchmarks/studies/adeps_greedy.py ad_d128 --minutes 8 --out runs/study     (one candidate)
    python benchmarks/studies/adeps_greedy.py all --minutes 8 --out runs/study         (all, in parallel)
    python benchmarks/studies/adeps_greedy.py ad_d64_context400 --updates 3000 --track-agreement  (and --agreement as it trains)
    python benchmarks/studies/adeps_greedy.py ad_d64_context400 --resume             (go on with an interrupted run)
    python benchmarks/studies/adeps_greedy.py --chosen OUT/NAME-seedS.jsonl          (the copy chosen on validation)
    python benchmarks/studies/adeps_greedy.py --per-goal CHECKPOINT ... --seed 1      (test goals, once chosen)
    python benchmarks/studies/adeps_greedy.py --average CHECKPOINT ... --seed S       (weight averaging, validation)
    python benchmarks/studies/adeps_greedy.py --ensemble CHECKPOINT ...               (seeds' predictions averaged)
    python benchmarks/studies/adeps_greedy.py --bayes 0.4117 0.5 --seed 1            (a perfect fit, test goals)
    python benchmarks/studies/adeps_greedy.py --bayes 0.4117 --goal-prior fit --seed 1  (the same knowing the fit goals)
    python benchmarks/studies/adeps_greedy.py --bayes-paper-pace 0.5 --seed 1          (the paper's pace and window)
    python benchmarks/studies/adeps_greedy.py --bayes-key-to-door --seed 1            (a perfect fit of Key-to-Door data)
    python benchmarks/studies/adeps_greedy.py --key-to-door-outcomes icrl_lab/checkpoints/key_to_door_adeps --seed 1
    python benchmarks/studies/adeps_greedy.py --key-to-door-outcomes CHECKPOINT --outcome-tasks train  (on trained tasks)
    python benchmarks/studies/adeps_greedy.py --agreement-paper-pace CHECKPOINT ...   (the same against its perfect fit)
    python benchmarks/studies/adeps_greedy.py --agreement-key-to-door CHECKPOINT ...  (the same for Key-to-Door, by what a step seeks)
    python benchmarks/studies/adeps_greedy.py --loss-gap CHECKPOINT ...               (loss against a perfect fit)
    python benchmarks/studies/adeps_greedy.py --paths CHECKPOINT ... --goals fit      (greedy moves)
    python benchmarks/studies/adeps_greedy.py --explore CHECKPOINT ...                (search before the first reward)
    python benchmarks/studies/adeps_greedy.py --agreement CHECKPOINT ...              (prediction against a perfect fit's)
    python benchmarks/studies/adeps_greedy.py --place CHECKPOINT ...                  (the noise level it reads, by episode)
    python benchmarks/studies/adeps_greedy.py --margins                               (what a perfect fit's argmax rests on)
    python benchmarks/studies/adeps_greedy.py --imitate bayes --rounds 5 --out DIR    (imitation on own contexts, DAgger)
    python benchmarks/studies/adeps_greedy.py --imitate bayes --soft --rounds 5 --out DIR  (the same on soft labels)
    python benchmarks/studies/adeps_greedy.py --imitate bayes --start icrl_lab/checkpoints/key_to_door_adeps --out DIR
                                                                                      (the same for Key-to-Door)

Each candidate writes OUT/NAME-seedS.jsonl (one line per evaluation), OUT/NAME-seedS/ (its latest checkpoint) and
OUT/NAME-seedS-atU/ (a copy of the checkpoint evaluated after U updates); with --track-agreement also
OUT/NAME-seedS-agreement.jsonl (one --agreement line per copy). A run that was interrupted, or cut short
by --stop-at, goes on from its last finished stretch with --resume; a new run into an OUT that holds one is
refused. The number of updates is set from the candidate's own speed over its first updates, so that it ends on
time with its whole cosine schedule (a GPU, where present, is shared by the candidates).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from icrl_lab.curricula import collect_noise_distillation, demonstrator_return, demonstrator_returns
from icrl_lab.envs import dark_room_goals, key_to_door_tasks, make_batched, task_split, token_sizes
from icrl_lab.envs.grid import NOOP
from icrl_lab.evaluate import (PROTOCOLS, MemoryAgent, bootstrap_ci, compare, in_context_figures, in_context_rollout,
                               per_task, play, rollout_table, with_ci)
from icrl_lab.histories import (OPTIONAL_STEP_ARRAYS, PER_ACTION_ARRAYS, STEP_ARRAYS, Histories, join_histories,
                                load_histories)
from icrl_lab.probe import (bayes_action_probabilities, bayes_rollout, compare_exploration, compare_with_bayes,
                            epsilon_levels, model_action_log_probs, prediction_gap, unknown_noise_action_probabilities,
                            unknown_noise_bayes_rollout,
                            cells_reached, goal_prior, greedy_contexts, key_to_door_action_probabilities,
                            key_to_door_bayes_rollout,
                            key_to_door_parts, loss_against_bayes, random_histories,
                            with_window_epsilon)
from icrl_lab.probe.bayes import demonstrator_moves, draw_actions, part_means
from icrl_lab.probe.representations import residual_stream
from icrl_lab.schedules import LinearSchedule, schedule_of
from icrl_lab.models import CONFIGS, check_model_files, load_model
from icrl_lab.recipes import Selection, load_shipped
from icrl_lab import sequence_models  # noqa: F401  (adds the GRU and SSM kinds to CONFIGS)
from icrl_lab.sources import collect_rl_histories
from icrl_lab.train import TrainConfig, train

DARK_ROOM = {"family": "DarkRoom", "num_steps": 400, "histories_per_task": 250, "max_perf": 0.5}
KEY_TO_DOOR = {"family": "DarkKeyToDoor", "num_steps": 800, "histories_per_task": 12, "max_perf": 0.5}
D128 = {"d_model": 128, "n_layer": 4, "n_head": 4}
# The official code's pace: epsilon all but constant within a window (see the round-6 candidates below).
PAPER_PACE = {**DARK_ROOM, "num_steps": 80_000, "histories_per_task": 1}
# The shipped recipe's size: width 64, 2 layers, batch 64, lr 3e-3.
RECIPE_AD = {"kind": "ad", "d_model": 64, "n_layer": 2, "n_head": 4}
RECIPE_TRAIN = {"batch_size": 64, "learning_rate": 3e-3}
# The same with a window of a whole 20-episode history (400 steps), in training and in acting.
WHOLE_HISTORY_AD = {**RECIPE_AD, "window_steps": 400}
WHOLE_HISTORY_TRAIN = {**RECIPE_TRAIN, "context_steps": 400}
# The same at Key-to-Door's 160-step window.
KEY_TO_DOOR_AD = {**RECIPE_AD, "window_steps": 160}
KEY_TO_DOOR_TRAIN = {**RECIPE_TRAIN, "context_steps": 160}

# name: (data, model kind and config, train settings)
CANDIDATES = {
    "ad_d64": (DARK_ROOM, RECIPE_AD, {"batch_size": 256, "learning_rate": 1e-3}),
    "ad_d128": (DARK_ROOM, {"kind": "ad", **D128}, {"batch_size": 256, "learning_rate": 5e-4}),
    "ad_d256": (DARK_ROOM, {"kind": "ad", "d_model": 256, "n_layer": 4, "n_head": 8}, {"batch_size": 512, "learning_rate": 3e-4}),
    "ad_d128_dropout": (DARK_ROOM, {"kind": "ad", **D128, "dropout": 0.1, "attention_dropout": 0.5},
                        {"batch_size": 256, "learning_rate": 5e-4}),
    "ad_d128_40episodes": ({**DARK_ROOM, "num_steps": 800, "histories_per_task": 125}, {"kind": "ad", **D128},
                           {"batch_size": 256, "learning_rate": 5e-4}),
    "ad_d128_context160": (DARK_ROOM, {"kind": "ad", **D128, "window_steps": 160},
                           {"batch_size": 256, "learning_rate": 5e-4, "context_steps": 160}),
    "ad_d128_floor0.5": ({**DARK_ROOM, "floor": 0.5}, {"kind": "ad", **D128}, {"batch_size": 256, "learning_rate": 5e-4}),
    "denoised_d128": (DARK_ROOM, {"kind": "dpt", **D128}, {"batch_size": 256, "learning_rate": 5e-4}),
    # One process with a large batch uses a shared GPU far better than many small ones.
    "ad_d128_batch1024": (DARK_ROOM, {"kind": "ad", **D128}, {"batch_size": 1024, "learning_rate": 1e-3}),
    "ktd_ad_d128": (KEY_TO_DOOR, {"kind": "ad", **D128, "window_steps": 160},
                    {"batch_size": 256, "learning_rate": 5e-4, "context_steps": 160}),
    # Controls at the shipped recipe's size (width 64, 2 layers, batch 64, lr 3e-3): AD^eps itself, and DPT's
    # labels (the optimal action) on contexts from a uniformly random policy. A random policy's moves say
    # nothing of the goal, so the only evidence a context holds is where rewards were and were not: does a
    # greedy policy that cannot mistake its own moves for a demonstrator's explore at this compute?
    "ad_d64_recipe": (DARK_ROOM, RECIPE_AD, RECIPE_TRAIN),
    "dpt_random_d64": ({**DARK_ROOM, "source": "random"}, {**RECIPE_AD, "kind": "dpt"}, RECIPE_TRAIN),
    # Memory: an 80-step window holds 4 of a history's 20 episodes, too few to remember which cells a
    # sweep of the room already ruled out. This one sees the whole history (400 steps).
    "ad_d64_context400": (DARK_ROOM, WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    # The whole-history window's greedy exploration comes and goes during training (rounds 5, 7 and 8): may
    # the paper's dropout (0.1) keep it from fitting the data's mode away? Its attention dropout (0.5) is
    # left out: on CPU it moves scaled_dot_product_attention off its fused kernel, 7.6x slower per layer.
    "ad_d64_context400_dropout": (DARK_ROOM, {**WHOLE_HISTORY_AD, "dropout": 0.1}, WHOLE_HISTORY_TRAIN),
    # The paper's attention dropout of 0.5, as key dropout (a query ignores each earlier key with probability
    # 0.5, the softmax spreading over the rest), which keeps the fused kernel on a CPU. A prediction that must
    # hold on any half of the context may hold on contexts unlike the data's, such as the model's own moves.
    "ad_d64_context400_key_dropout": (DARK_ROOM, {**WHOLE_HISTORY_AD, "key_dropout": 0.5}, WHOLE_HISTORY_TRAIN),
    # Round 17: the seeds' errors on their own contexts are shared, so not noise that more seeds average away.
    # Does a larger network (width 128 and 4 layers, the paper's depth; 0.8M parameters against 0.1M) meet
    # contexts unlike its data's as a perfect fit does? The largest the two cores can train in a few sessions.
    "ad_d128_context400": (DARK_ROOM, {**WHOLE_HISTORY_AD, **D128}, {**WHOLE_HISTORY_TRAIN, "learning_rate": 1e-3}),
    # Round 19: the models read their own early moves as evidence of the goal, where a perfect fit, which reads
    # epsilon from the position in the window, gives them almost none. Rotary embeddings tell attention only
    # relative positions, so a model must infer how far the curriculum has gone from what the context shows, and
    # its own straight runs look like a late, nearly greedy demonstrator. Give it the place of each step.
    "ad_d64_context400_absolute_positions": (DARK_ROOM, {**WHOLE_HISTORY_AD, "absolute_positions": True},
                                             WHOLE_HISTORY_TRAIN),
    # The paper's width, depth and dropout (residual 0.1, attention 0.5) on the whole-history window, for a GPU:
    # batch 128 of 400 steps holds about the paper's tokens per update (512 of 80). A short GPU session trains,
    # chooses and measures it in one command, gpu_lead.sh (results README, "On a GPU").
    "ad_d512_context400": (DARK_ROOM, {**WHOLE_HISTORY_AD, "d_model": 512, "n_layer": 4, "n_head": 4, "dropout": 0.1,
                                       "attention_dropout": 0.5},
                           {**WHOLE_HISTORY_TRAIN, "batch_size": 128, "learning_rate": 3e-4}),
    # Or does a smaller step keep it, the fit to the data's mode coming more slowly (a third of the rate)?
    "ad_d64_context400_lr1e-3": (DARK_ROOM, WHOLE_HISTORY_AD, {**WHOLE_HISTORY_TRAIN, "learning_rate": 1e-3}),
    # The same with the paper's own data setting (epsilon floor 0.5): the demonstrator's moves say less of the
    # goal (odds of 6 rather than 8 per move), so the model's own moves may mislead it less.
    "ad_d64_context400_floor0.5": ({**DARK_ROOM, "floor": 0.5}, WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    # Curriculum pace: the official code plays one history per goal of 20,000 episodes, so epsilon is all
    # but constant within an 80-step window; the recipe's 20-episode histories fall 0.13 over 4 episodes.
    # These ones play one history of 4,000 episodes per goal (a window's epsilon moves by 0.001).
    "ad_d64_slow_curriculum": (PAPER_PACE, RECIPE_AD, RECIPE_TRAIN),
    "ad_d64_slow_curriculum_floor0.5": ({**PAPER_PACE, "floor": 0.5}, RECIPE_AD, RECIPE_TRAIN),
    # The paper's token layout: state, action and reward as three tokens (240 per 80-step window), not one.
    "ad_d64_three_tokens": (DARK_ROOM, {**RECIPE_AD, "tokens_per_step": 3}, RECIPE_TRAIN),
    # The same objective with less noise in its gradient: the target is the demonstrator's action distribution
    # (epsilon-greedy around its recorded optimal action) rather than the one action drawn from it. The best
    # prediction is the same (the posterior predictive, which acts optimally when decoded greedily: --bayes);
    # the trained models' loss stays about 0.01 nats a step above it before the first reward (--loss-gap).
    "ad_d64_context400_demonstrator_policy": (DARK_ROOM, {**WHOLE_HISTORY_AD, "target": "demonstrator_policy"},
                                              WHOLE_HISTORY_TRAIN),
    # A smaller room first: AD^eps's own Medium Dark Room (5x5, 20 steps) and a 7x7 room between it and the
    # 9x9, at the whole-history window. Is greedy exploration out of reach at this compute only on the 9x9,
    # where a posterior over 81 cells must be kept, or on any room? About as many histories as the 9x9's.
    "ad_d64_context400_room5": ({**DARK_ROOM, "histories_per_task": 800, "env_kwargs": {"size": 5}},
                                WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    "ad_d64_context400_room7": ({**DARK_ROOM, "histories_per_task": 420, "env_kwargs": {"size": 7}},
                                WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    # Round 11: the models fit the demonstrator's histories all but perfectly yet act unlike a perfect fit on
    # their own greedy moves, which no window of the recipe's data resembles: there, a window always starts
    # where its history starts, so its first steps are always the nearly random demonstrator's. Cut whole-
    # history windows anywhere in the paper's long histories instead, so that a window starts, with no
    # reward in it yet, at every noise level, from nearly random to the floor, and a window's position no
    # longer says how random the demonstrator is.
    "ad_d64_context400_slow_curriculum": (PAPER_PACE, WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    "ad_d64_context400_slow_curriculum_floor0.5": ({**PAPER_PACE, "floor": 0.5}, WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    # Or put the model's own kind of context into training directly (a departure from AD, as DPT's labels
    # are: it needs the goal when training): the shipped whole-history model's rollouts on the fit goals,
    # nearly greedy (sampled at temperature 0.01, so that they differ), each step labelled with what the
    # AD^eps demonstrator would do there at that point of its curriculum, one rollout for every five of the
    # demonstrator's histories. The target is the demonstrator's distribution throughout.
    "ad_d64_context400_own_contexts": ({**DARK_ROOM, "own_contexts": {"checkpoint": "icrl_lab/checkpoints/"
                                        "dark_room_adeps_whole_history", "per_goal": 50, "temperature": 0.01}},
                                       {**WHOLE_HISTORY_AD, "target": "demonstrator_policy"}, WHOLE_HISTORY_TRAIN),
    # Round 12: in a window's first four episodes (epsilon 1.0 to 0.90) even a perfect fit's greedy choice is a
    # near tie (margins of 0.0001-0.002), so a model's greedy moves there are arbitrary, and the contexts they
    # make are nothing like the data's. Histories whose noise starts at 0.8 (margin 0.17 in round 12) and falls
    # to the same floor make every episode of a window carry evidence of the goal; still AD on a noise curriculum.
    "ad_d64_context400_start0.8": ({**DARK_ROOM, "schedule_start": 0.8}, WHOLE_HISTORY_AD, WHOLE_HISTORY_TRAIN),
    # Round 20: at the paper's pace a perfect fit explores greedily by taking its own consistent moves for a
    # nearly greedy demonstrator's (--bayes-paper-pace). Round 6's width-64 model did not; does a larger one,
    # at the paper's depth, come nearer that fit on its own greedy contexts (--agreement-paper-pace)?
    "ad_d128_slow_curriculum_floor0.5": ({**PAPER_PACE, "floor": 0.5}, {"kind": "ad", **D128},
                                         {**RECIPE_TRAIN, "learning_rate": 1e-3}),
    # The paper's own setting for a GPU: its pace, floor, 80-step window, width, depth, heads, dropout (residual
    # 0.1, attention 0.5), batch and learning rate; one token per step where the paper has three.
    "ad_d512_slow_curriculum_floor0.5": ({**PAPER_PACE, "floor": 0.5},
                                         {"kind": "ad", "d_model": 512, "n_layer": 4, "n_head": 4, "dropout": 0.1,
                                          "attention_dropout": 0.5},
                                         {"batch_size": 512, "learning_rate": 3e-4}),
    # Round 21: through training the models fit the demonstrator's contexts ever better while their error on
    # their own contexts stays flat (rounds 15, 19, 20), as if they learned a table of the data's contexts
    # rather than the inference a perfect fit makes. Strong weight decay is what moves networks trained long
    # on algorithmic tasks from memorizing to rules that hold off their data; at 1e-4 the weights hardly feel
    # it. The whole-history recipe with 1,000 and 10,000 times as much.
    "ad_d64_context400_weight_decay0.1": (DARK_ROOM, WHOLE_HISTORY_AD, {**WHOLE_HISTORY_TRAIN, "weight_decay": 0.1}),
    "ad_d64_context400_weight_decay1": (DARK_ROOM, WHOLE_HISTORY_AD, {**WHOLE_HISTORY_TRAIN, "weight_decay": 1.0}),
    # Key-to-Door's shipped model fetches the key in nearly every episode and opens the door in almost none
    # (--key-to-door-outcomes): after the key it must search for the door across episodes, and its 160-step
    # window holds four of them (the no-model control opens its first door in episode 10). The recipe's
    # network with 400 steps in its window (and the recipe's window as its control, trained alike).
    "ktd_ad_d64_context400": (KEY_TO_DOOR, {**RECIPE_AD, "window_steps": 400}, {**RECIPE_TRAIN, "context_steps": 400}),
    "ktd_ad_d64_context160": (KEY_TO_DOOR, KEY_TO_DOOR_AD, KEY_TO_DOOR_TRAIN),
    # On the demonstrator's own contexts these models have learned the key search and not the way back to a door
    # their window shows (--agreement-key-to-door): rare steps (8%) with a weak signal (epsilon 0.75 to 1). Four
    # times the windows per update, so that each update sees four times as many of them.
    "ktd_ad_d64_context160_batch256": (KEY_TO_DOOR, KEY_TO_DOOR_AD, {**KEY_TO_DOOR_TRAIN, "batch_size": 256}),
    # The same rare steps without the noise of the draw: at the floor three labels in four are uniform draws.
    # The target is the demonstrator's distribution (epsilon-greedy around its recorded move), whose best
    # prediction given a context is the same.
    "ktd_ad_d64_context160_demonstrator_policy": (KEY_TO_DOOR, {**KEY_TO_DOOR_AD, "target": "demonstrator_policy"},
                                                  KEY_TO_DOOR_TRAIN),
    # Taught on its own contexts by the data's perfect fit (--imitate bayes), the recipe's network comes nearer the
    # fit's predictions there and not nearer its policy: is the width-64 network too small for the door search?
    # Width 128 and 4 layers at the recipe's batch, with the lr of the Dark Room width-128 runs.
    "ktd_ad_d128_context160": (KEY_TO_DOOR, {"kind": "ad", **D128, "window_steps": 160},
                               {**RECIPE_TRAIN, "learning_rate": 1e-3, "context_steps": 160}),
    # The door search chains look-ups: which steps of each episode came after its key, which cells those steps
    # visited without the door's reward, which of them lie next to the current cell. A 2-layer network has two
    # rounds of attention for that, and the teaching levels off with it (about 1.2x); width 128 added layers
    # but also width and a lower lr. The recipe's width, batch and lr with 4 layers.
    "ktd_ad_d64_4_layers_context160": (KEY_TO_DOOR, {**KEY_TO_DOOR_AD, "n_layer": 4}, KEY_TO_DOOR_TRAIN),
    # On their own door search the models push into a wall in half their moves and repeat their last move three
    # times as often as the perfect fit (--agreement-key-to-door): in the data a move into a wall is always a
    # random one, and a model that reads its own pushes as the demonstrator's moves toward the door keeps on.
    # Without the previous move in the token, the cells show each move that moved and a push reads as a stay.
    "ktd_ad_d64_context160_no_action_input": (KEY_TO_DOOR, {**KEY_TO_DOOR_AD, "previous_action_input": False},
                                              KEY_TO_DOOR_TRAIN),
    # The GRU improves greedily on Q-learning data where the transformer does not (cpu_seeds study).
    "gru_d64_slow_curriculum_floor0.5": ({**PAPER_PACE, "floor": 0.5},
                                         {"kind": "gru", "d_model": 64, "n_layer": 2}, RECIPE_TRAIN),
}


def toward_goal(histories: Histories) -> np.ndarray:
    """The scripted demonstrator's move at every step of 9x9 Dark Room `histories`, toward each one's goal."""
    goal_cells = histories.tasks[:, 0] * 9 + histories.tasks[:, 1]
    return demonstrator_moves(9)[histories.observations.astype(np.int64), goal_cells[:, None]]


def with_own_contexts(histories: Histories, checkpoint: str, per_goal: int, temperature: float, seed: int) -> Histories:
    """AD^eps Dark Room `histories` and, after them, a trained model's own rollouts on the same goals
    (`per_goal` each, sampled at `temperature`, as long as the histories), each step labelled with the
    demonstrator's epsilon at that step of the curriculum and its move toward the goal."""
    model, _ = load_model(checkpoint)
    goals = np.unique(histories.tasks, axis=0)
    episodes = histories.num_steps // 20
    _, own = in_context_rollout(model, "DarkRoom", np.repeat(goals, per_goal, axis=0), episodes, mode="sample",
                                temperature=temperature, seed=seed)
    epsilon = np.broadcast_to(histories.epsilon[0], own.observations.shape)
    return join_histories([histories, replace(own, epsilon=epsilon, optimal_actions=toward_goal(own))],
                        {**histories.metadata, "own_contexts": {"checkpoint": checkpoint, "per_goal": per_goal,
                                                                "temperature": temperature}})


def validation_figures(model, family, tasks, episodes: int, seed: int = 0, env_kwargs: dict | None = None) -> dict:
    figures = {}
    for mode, rollouts in (("greedy", 1 if family == "DarkRoom" else 4), ("sample", 4)):
        figures.update({f"{mode}_{key}": value for key, value in
                        in_context_figures(model, family, tasks, episodes, mode, rollouts, seed,
                                           env_kwargs=env_kwargs).items()})
    return figures


def run(name: str, minutes: float, out: Path, seed: int, updates: int | None = None, stop_at: int | None = None,
        track_agreement: bool = False, resume: bool = False):
    torch.set_num_threads(1)
    log_path, checkpoint = out / f"{name}-seed{seed}.jsonl", out / f"{name}-seed{seed}"
    if resume:
        if not log_path.is_file():
            raise SystemExit(f"--resume: {log_path} does not exist, so there is no run of {name} (seed {seed}) in "
                             f"{out} to go on with; leave --resume out to start it")
        header = json.loads(log_path.read_text().splitlines()[0])
        if updates is not None and updates != header["updates"]:
            raise SystemExit(f"--resume: the run in {out} spans {header['updates']} updates, not --updates {updates}; "
                             f"give its own count or leave --updates out")
        updates = header["updates"]
    elif log_path.exists() or checkpoint.exists() or any(out.glob(f"{name}-seed{seed}-at*")):
        raise SystemExit(f"{out} already holds a run of {name} (seed {seed}): pass --resume to go on with it, or "
                         f"choose another --out")
    data_settings, model_settings, train_settings = (dict(part) for part in CANDIDATES[name])
    family = data_settings.pop("family")
    if track_agreement and not (family == "DarkRoom" and model_settings.get("window_steps") == data_settings["num_steps"]):
        # The perfect fit reads the demonstrator's epsilon from the position in a window that starts a history.
        raise SystemExit(f"--track-agreement needs a whole-history Dark Room candidate (window_steps equal to the "
                         f"histories' num_steps); {name} is not one")
    env_kwargs = data_settings.pop("env_kwargs", {})
    size = env_kwargs.get("size", 9)
    fit, validation = task_split(family, "fit", size=size), task_split(family, "validation", size=size)
    if data_settings.get("source") == "random":
        histories = collect_rl_histories(family, fit, "random", data_settings["num_steps"],
                                         data_settings["histories_per_task"], seed=seed)
    else:
        own_contexts = data_settings.pop("own_contexts", None)
        start = data_settings.pop("schedule_start", 1.0)
        histories = collect_noise_distillation(family, fit, seed=seed, env_kwargs=env_kwargs,
                                               schedule=LinearSchedule(start=start), **data_settings)
        data_settings["schedule_start"] = start
        if own_contexts:
            histories = with_own_contexts(histories, **own_contexts, seed=seed)
            data_settings["own_contexts"] = own_contexts
    kind = model_settings.pop("kind")
    model_config = CONFIGS[kind](**token_sizes(family, fit, **env_kwargs), **model_settings)
    settings = {"weight_decay": 1e-4, "context_steps": model_config.window_steps, **train_settings}
    evaluations = 8
    if updates is None:
        # Size the run to the time given from this candidate's speed (in company of the others): the
        # difference of two short runs after a first one, so that start-up costs cancel out.
        started = time.perf_counter()
        timings = []
        for count in (10, 20, 120):
            timer = time.perf_counter()
            train(model_config, histories, TrainConfig(updates=count, seed=seed, **settings), progress=False)
            timings.append(time.perf_counter() - timer)
        seconds_per_update = (timings[2] - timings[1]) / 100
        budget = minutes * 60 * 0.88 - (time.perf_counter() - started)
        updates = max(200, int(budget / seconds_per_update / 1.08))
    eval_every = max(50, updates // evaluations // 50 * 50)
    episodes = 40 if family == "DarkRoom" else 30
    run_started = time.perf_counter()

    def evaluate(model):
        figures = validation_figures(model, family, validation, episodes, seed=seed, env_kwargs=env_kwargs)
        # train evaluates only at the end of a stretch, so the loop's stretch_end is the update reached
        line = {"name": name, "update": stretch_end, "seconds": round(time.perf_counter() - run_started, 1), **figures}
        with log_path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        return figures

    config = TrainConfig(updates=updates, seed=seed, eval_every=eval_every, log_every=eval_every,
                         checkpoint_every=eval_every, **settings)
    if resume:  # the log's header stays as the run's first process wrote it
        resumed_at, seconds_before = resume_log(log_path, checkpoint, updates, eval_every)
        run_started -= seconds_before  # an evaluation's seconds count from the run's start, across resumes
        with log_path.open("a") as f:
            f.write(json.dumps({"name": name, "resumed_at": resumed_at}) + "\n")
    else:
        header = {"name": name, "updates": updates, "eval_every": eval_every,
                  "data": data_settings | {"family": family, "env_kwargs": env_kwargs},
                  "model": {"kind": kind, **model_settings}, "train": settings,
                  "data_summary": histories.summary()}
        log_path.write_text(json.dumps(header) + "\n")
    # Train in stretches of eval_every updates and keep a copy of each stretch's checkpoint
    # (OUT/NAME-seedS-atU, put in place whole), so that the one chosen on the validation goals can be measured
    # on the test goals; a resumed run skips the stretches whose copy is there.
    agreement_path = out / f"{name}-seed{seed}-agreement.jsonl"
    end = updates if stop_at is None else min(stop_at, updates)
    log = None
    for stretch_end in [*range(eval_every, end, eval_every), end]:
        copy = out / f"{name}-seed{seed}-at{stretch_end}"
        if not copy.is_dir():
            _, log = train(model_config, histories, config, out_dir=checkpoint,
                           resume=(checkpoint / "training_state.json").is_file(), stop_at=stretch_end,
                           record=asdict(histories.provenance()), progress=False, evaluate=evaluate)
            staging = copy.with_name(f".{copy.name}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(checkpoint, staging)
            staging.rename(copy)
        if track_agreement:
            tracked = {json.loads(line)["checkpoint"] for line in agreement_path.read_text().splitlines()} \
                if agreement_path.is_file() else set()
            if str(copy) not in tracked:
                with agreement_path.open("a") as f:
                    f.write(json.dumps(agreement_line(copy)) + "\n")
    if log is None:  # every stretch was done before this resumed run
        log = json.loads((checkpoint / "config.json").read_text())["log"]
    with log_path.open("a") as f:
        f.write(json.dumps({"name": name, "done": True, "log": log}) + "\n")


def resume_log(log_path: Path, checkpoint: Path, updates: int, eval_every: int) -> tuple[int, float]:
    """Cut a run's log back to the evaluations its checkpoint holds (an evaluation written after the
    checkpoint's last save is made again when its stretch is trained again), rewriting it whole; returns
    the update the run goes on from and the seconds of the last evaluation kept (0 if none)."""
    state = checkpoint / "training_state.json"
    done = json.loads(state.read_text())["update"] if state.is_file() else 0
    evaluations = done // eval_every + (done == updates and done % eval_every != 0)
    kept, evaluations_kept, seconds = [], 0, 0.0
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        if "greedy_last10" in entry:
            evaluations_kept += 1
            if evaluations_kept > evaluations:
                continue
            seconds = entry["seconds"]
        elif "done" in entry:  # a run stopped early by --stop-at, which goes on now
            continue
        kept.append(line)
    staging = log_path.with_name(f".{log_path.name}.tmp")
    staging.write_text("\n".join(kept) + "\n")
    staging.replace(log_path)
    return done, seconds


def chosen_checkpoint(log_path: Path) -> Path:
    """The copy a run's log chooses as `recipes.Selection` does: the highest greedy mean over the last 10
    validation episodes, the earliest on a tie."""
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    evaluations = [line for line in lines if "greedy_last10" in line]
    if not evaluations or "update" not in evaluations[0]:
        raise SystemExit(f"{log_path} holds no evaluation with its update (logs from before this option name none): "
                         f"choose from its lines by hand")
    best = Selection.choose(evaluations, score="greedy_last10")
    return log_path.with_name(f"{log_path.stem}-at{best['update']}")


TEACHERS = ("bayes", "demonstrator")
SHIPPED_WHOLE_HISTORY = Path("icrl_lab/checkpoints/dark_room_adeps_whole_history")


def teacher_probabilities(histories: Histories, teacher: str) -> np.ndarray:
    """A teacher's action probabilities at every step of Dark Room `histories` (a model's own rollouts, carrying
    the demonstrator's epsilon at each position of the window). "bayes": a perfect fit of the AD^eps data (its
    posterior predictive, uniform prior), which reads every move in the context as the demonstrator's and
    needs no goal. "demonstrator": the AD^eps demonstrator itself at that epsilon, which knows the goal (as
    DPT's labels do)."""
    if teacher == "bayes":
        return bayes_action_probabilities(histories)
    epsilon = histories.epsilon[..., None].astype(np.float64)
    return epsilon / 5 + (1 - epsilon) * np.eye(5)[toward_goal(histories)]


class DarkRoomTeaching:
    """What `imitation_rounds` needs of whole-history Dark Room: every fit goal rolled out for one window,
    `per_goal` times, labelled by `teacher_probabilities`; its validation is the studies' (8 goals, 40 episodes)
    and its own-context check `compare_with_bayes` before the first reward."""

    validation_episodes = 40

    def __init__(self, model, record, teacher: str, per_goal: int = 50):
        self.teacher, self.per_goal, self.window = teacher, per_goal, model.config.window_steps
        self.epsilon = schedule_of(record["data"]["source"]).values(self.window)
        self.data_settings = {key: value for key, value in DARK_ROOM.items() if key != "family"}
        self.settings = {"per_goal": per_goal}

    def training_data(self, data: Histories) -> Histories:
        return data  # whole-history windows: each starts where its history starts, as the labels' fit does

    def label(self, model, temperatures, rng):
        """Yields (rollouts, the teacher's probabilities at their steps), chunk by chunk."""
        # In chunks: the labels' posterior is (rows, steps, cells).
        for goals in np.array_split(task_split("DarkRoom", "fit"), 8):
            for temperature in temperatures:
                _, played = in_context_rollout(model, "DarkRoom",
                                               np.repeat(goals, self.per_goal // len(temperatures), axis=0),
                                               self.window // 20, mode="sample", temperature=temperature,
                                               seed=int(rng.integers(2**31)))
                played = with_window_epsilon(played, self.epsilon)
                yield played, teacher_probabilities(played, self.teacher)

    def own_context_gap(self, model, seed: int) -> dict:
        contexts = greedy_contexts(model, np.repeat(task_split("DarkRoom", "validation"), 4, axis=0), self.epsilon,
                                   seed=seed)
        return {"own_greedy_against_perfect_fit": compare_with_bayes(model, contexts)["before_first_reward"]}


class KeyToDoorTeaching:
    """What `imitation_rounds` needs of Key-to-Door: each round, `tasks_per_round` fit tasks drawn afresh, each
    rolled out once for as many steps as the data's histories (800), labelled by the perfect fit of the model's
    data (`probe.KeyToDoorBayesAgent`, 6 noise levels, the model's window); training cuts windows anywhere in
    them, as in the data. Its validation is the studies' (the 50 validation tasks, 30 episodes) and its
    own-context check `key_to_door_gap` on the model's greedy rollouts (the first 10 validation tasks, 4 each,
    30 episodes). The data keep `histories_per_task` demonstrator histories of each fit task (the recipe has 12):
    the rounds train 600 updates of 64 windows, far fewer than the data hold either way, and fewer of them keep
    the labelled rollouts from being a sliver of what is sampled (3,800 histories against 475 a round)."""

    validation_episodes = 30

    def __init__(self, model, record, teacher: str, in_windows: bool = False, tasks_per_round: int = 475,
                 histories_per_task: int = 4):
        if teacher != "bayes":
            raise SystemExit(f"--imitate {teacher} is Dark Room's: a Key-to-Door model's own rollouts carry no "
                             f"demonstrator epsilon to act at; use --imitate bayes")
        self.tasks_per_round, self.window, self.in_windows = tasks_per_round, model.config.window_steps, in_windows
        self.steps = KEY_TO_DOOR["num_steps"]
        self.levels = epsilon_levels(schedule_of(record["data"]["source"]), self.steps, 6)
        self.data_settings = {**{key: value for key, value in KEY_TO_DOOR.items() if key != "family"},
                              "histories_per_task": histories_per_task}
        self.settings = {"tasks_per_round": tasks_per_round, "epsilons": self.levels[0].round(3).tolist(),
                         "in_windows": in_windows}

    def training_data(self, data: Histories) -> Histories:
        return in_pieces(data, self.window) if self.in_windows else data

    def label(self, model, temperatures, rng):
        """Yields (rollouts, the perfect fit's probabilities at their steps), chunk by chunk. With `in_windows`,
        the rollouts are cut into pieces of the model's window, each read by a fit that starts where it starts
        (from the cells reached in the episode under way there), so that a training window holds all its labels
        were read from; otherwise the fit reads the window before each step of the whole rollout, of which a
        training window cut anywhere in it holds only a part."""
        fit = task_split("DarkKeyToDoor", "fit")
        chosen = fit[rng.choice(len(fit), self.tasks_per_round, replace=False)]
        # In chunks (the fit's posterior is (rows, 6, 81, 81)), each sampled at one of the temperatures in turn.
        for index, tasks in enumerate(np.array_split(chosen, 4 * len(temperatures))):
            played = rollout_steps(model, "DarkKeyToDoor", tasks, self.steps, temperatures[index % len(temperatures)],
                                   int(rng.integers(2**31)))
            if not self.in_windows:
                yield played, key_to_door_action_probabilities(played, *self.levels, self.window)
                continue
            pieces = in_pieces(played, self.window)
            reached = cells_reached(played)[:, ::self.window][:, :played.num_steps // self.window]
            yield pieces, key_to_door_action_probabilities(pieces, *self.levels, self.window,
                                                           holds_key=reached.reshape(-1, reached.shape[-1]))

    def own_context_gap(self, model, seed: int) -> dict:
        validation = task_split("DarkKeyToDoor", "validation")[:10]
        _, own = in_context_rollout(model, "DarkKeyToDoor", np.repeat(validation, 4, axis=0), 30, mode="greedy",
                                    seed=seed)
        gap, uniform = key_to_door_gap(model, own, self.levels, self.window)
        return {"own_greedy_against_perfect_fit": gap, "own_greedy_uniform_guessing": uniform}


def in_pieces(histories: Histories, steps: int) -> Histories:
    """Every history cut into consecutive pieces of `steps` steps (a shorter rest dropped), each a history of
    its own, in order (a history's pieces side by side)."""
    pieces = histories.num_steps // steps

    def cut(array):
        return array[:, :pieces * steps].reshape(len(array) * pieces, steps, *array.shape[2:])
    arrays = {name: cut(getattr(histories, name)) for name in STEP_ARRAYS + OPTIONAL_STEP_ARRAYS + PER_ACTION_ARRAYS
              if getattr(histories, name) is not None}
    return replace(histories, **arrays, tasks=np.repeat(histories.tasks, pieces, axis=0))


def rollout_steps(model, family: str, tasks, steps: int, temperature: float, seed: int) -> Histories:
    """A model's rollouts on `tasks`, sampled at `temperature`, cut to their first `steps` steps: played for as
    many episodes as that takes (an episode can end early, so more than steps / horizon may be needed)."""
    episodes = -(-steps // make_batched(family, np.asarray(tasks)[:1]).horizon)
    while True:
        _, played = in_context_rollout(model, family, tasks, episodes, mode="sample", temperature=temperature,
                                       seed=seed)
        if played.num_steps >= steps:
            return replace(played, **{name: getattr(played, name)[:, :steps] for name in STEP_ARRAYS})
        episodes *= 2


def imitation_rounds(teacher: str, rounds: int, updates: int, out: Path, seed: int = 0,
                     temperatures: tuple = (0.01, 0.3), start: Path = SHIPPED_WHOLE_HISTORY, first_round: int = 1,
                     soft: bool = False, in_windows: bool = False):
    """Imitation on the learner's own contexts (DAgger), in rounds: roll the model out on fit tasks (sampling at
    each of `temperatures`, split among the rollouts: nearly greedy, and a little wider), label every step with
    an action drawn from the `teacher`'s prediction there, or with `soft` with the prediction itself (its
    probabilities, the target "action_probabilities"; the AD^eps data's are then one-hot), and train the model
    on from its weights for `updates` updates on the AD^eps data (labelled with its own next actions, as AD is)
    and every round's labelled rollouts so far. Which rollouts and labels depends on the family of the `start`
    checkpoint (`DarkRoomTeaching`, by default from the shipped whole-history model, or `KeyToDoorTeaching`).
    After each round, logs its validation figures and how far its prediction is from a perfect fit's on its
    own greedy contexts. A departure from AD either way: the labels come from a teacher, not from the data.
    Each round's labelled rollouts are kept beside its checkpoint
    (OUT/NAME-roundK-rollouts.h5). To go on with a run, start from its last round's checkpoint with
    `first_round` the next round's number: the new rounds aggregate the earlier rounds' rollouts in `out`. A run
    that would overwrite another, or lacks an earlier round's rollouts (an interrupted run), is refused with the
    command that continues from the last complete round."""
    torch.set_num_threads(1)
    model, record = load_model(start)
    family = record["data"]["env_family"]
    if family == "DarkRoom" and in_windows:
        raise SystemExit("--in-windows is for Key-to-Door models, whose windows slide; Dark Room's teaching already "
                         "labels whole-history windows from their start: leave it out")
    teaching = DarkRoomTeaching(model, record, teacher) if family == "DarkRoom" else \
        KeyToDoorTeaching(model, record, teacher, in_windows)
    out.mkdir(parents=True, exist_ok=True)
    name = (f"dagger_{teacher}{'_soft' if soft else ''}{'' if family == 'DarkRoom' else '_key_to_door'}"
            f"{'_in_windows' if in_windows else ''}-seed{seed}")
    log_path = out / f"{name}.jsonl"

    def rollouts_path(round_number):
        return out / f"{name}-round{round_number}-rollouts.h5"

    def continue_hint():  # the last round whose checkpoint and rollouts were both written
        def is_complete(round_number):
            try:
                check_model_files(out / f"{name}-round{round_number}")
            except (FileNotFoundError, ValueError):
                return False
            return rollouts_path(round_number).is_file()
        numbers = [path.name.removeprefix(f"{name}-round") for path in out.glob(f"{name}-round*")]
        done = [int(number) for number in numbers if number.isdigit() and is_complete(int(number))]
        if not done:
            return (f"no round of {name} in {out} is complete: start afresh with --first-round 1"
                    + (" and another --out" if log_path.is_file() else ""))
        last = max(done)
        return (f"its last complete round is {last}: go on with --start {out}/{name}-round{last} "
                f"--first-round {last + 1}, or start afresh with another --out")

    missing = [number for number in range(1, first_round) if not rollouts_path(number).is_file()]
    if missing:
        raise SystemExit(f"{out} lacks the labelled rollouts of round(s) {missing} of {name}, which round "
                         f"{first_round} must aggregate; {continue_hint()}")
    if first_round == 1 and log_path.is_file():
        raise SystemExit(f"{log_path} exists: a run of {name} is already there and would be overwritten; "
                         f"{continue_hint()}")
    validation = task_split(family, "validation")
    data = collect_noise_distillation(family, task_split(family, "fit"), seed=seed, **teaching.data_settings)
    data = teaching.training_data(replace(data, optimal_actions=data.actions.copy()))  # AD's label: its own next action
    if soft:
        data = replace(data, action_probabilities=np.eye(5, dtype=np.float32)[data.actions])
    model_config = replace(model.config, target="action_probabilities" if soft else "optimal_actions")
    settings = TrainConfig(updates=updates, seed=seed, batch_size=64, context_steps=model.config.window_steps,
                           learning_rate=1e-3, weight_decay=1e-4)
    own = [load_histories(rollouts_path(number)) for number in range(1, first_round)]
    header = {"name": name, "teacher": teacher, "soft": soft, "rounds": rounds, "first_round": first_round,
              "start": str(start), "rollouts_of_earlier_rounds": list(range(1, first_round)),
              "teaching": teaching.settings, "temperatures": list(temperatures), "data": teaching.data_settings,
              "train": asdict(settings)}
    with log_path.open("w" if first_round == 1 else "a") as f:
        f.write(json.dumps(header) + "\n")
    started = time.perf_counter()
    for round_number in range(first_round - 1, first_round + rounds):
        if round_number == first_round - 1 and first_round > 1:
            continue  # the start was logged as the last round of the run it continues
        if round_number >= first_round:
            rng = np.random.default_rng([seed, round_number])
            labelled = [replace(played, optimal_actions=draw_actions(probabilities, rng),
                                action_probabilities=probabilities.astype(np.float32) if soft else None)
                        for played, probabilities in teaching.label(model, temperatures, rng)]
            own.append(join_histories(labelled, labelled[0].metadata))
            own[-1].save(rollouts_path(round_number))
            # Without epsilon, which the labels' targets do not read and Key-to-Door's rollouts do not carry.
            training = join_histories([replace(part, epsilon=None) for part in (data, *own)], {
                **data.metadata, "imitation_rounds": {"teacher": teacher, "round": round_number, "start": str(start)}})
            checkpoint = out / f"{name}-round{round_number}"
            model, _ = train(model_config, training, settings, out_dir=checkpoint, initial_weights=
                             out / f"{name}-round{round_number - 1}" if round_number > first_round else start,
                             record=asdict(training.provenance()), progress=False, overwrite=True)
        line = {"round": round_number, "own_histories": sum(part.num_histories for part in own),
                "seconds": round(time.perf_counter() - started, 1),
                **validation_figures(model, family, validation, teaching.validation_episodes, seed=seed),
                **teaching.own_context_gap(model, seed)}
        with log_path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)


def per_goal(checkpoints: list[Path], seed: int = 1, versus: list[Path] | None = None):
    """Print each Dark Room checkpoint's greedy last-10 return on every test goal (the adeps protocol's
    rollouts, averaged per goal): after the choice, to see what a protocol mean is made of. With `versus`,
    the same for those checkpoints, then the difference of the two groups' means (training seeds averaged
    within each goal), paired by goal, with its bootstrap interval over goals: the seeds count as fixed."""
    protocol = PROTOCOLS["adeps"]
    goals = dark_room_goals("test")
    figures = {}
    for checkpoint in [*checkpoints, *(versus or [])]:
        model, _ = load_model(checkpoint)
        frame, played = in_context_rollout(model, "DarkRoom", np.repeat(goals, protocol.rollouts_per_task, axis=0),
                                           protocol.episodes_for("DarkRoom"), mode=protocol.decoding, seed=seed)
        figures[checkpoint] = goal_values = per_task(rollout_table(frame, played, protocol.rollouts_per_task,
                                                                   protocol.last))
        print(json.dumps({"checkpoint": str(checkpoint), "goals": goals.tolist(),
                          "last10_per_goal": goal_values[f"last{protocol.last}"].round(2).tolist(),
                          "first_reward_episode_per_goal": goal_values["first_reward_episode"].round(2).tolist()}))
    if versus:
        def group_mean(group, column):
            return np.mean([figures[checkpoint][column].to_numpy() for checkpoint in group], axis=0)
        print(json.dumps({"checkpoints": [str(c) for c in checkpoints], "versus": [str(c) for c in versus],
                          **{f"{column}_difference": dict(zip(("mean", "low", "high"), bootstrap_ci(
                              group_mean(checkpoints, column) - group_mean(versus, column))))
                             for column in (f"last{protocol.last}", "first_reward_episode")}}))


def study_goals(part: str, size: int = 9) -> np.ndarray:
    """The goals a diagnostic plays: the 8 validation goals, or as many of the fit goals the models trained on."""
    validation = task_split("DarkRoom", "validation", size=size)
    return validation if part == "validation" else task_split("DarkRoom", "fit", size=size)[:len(validation)]


def paths(checkpoints: list[Path], part: str = "validation", episodes: int = 6, seed: int = 0):
    """Print each Dark Room checkpoint's greedy moves on its room's validation (or fit) goals, one line of
    arrows per episode (noop as a dot), context carried across the episodes."""
    for checkpoint in checkpoints:
        model, record = load_model(checkpoint)
        env_kwargs = record["env_kwargs"]
        goals = study_goals(part, env_kwargs.get("size", 9))
        _, played = in_context_rollout(model, "DarkRoom", goals, episodes, env_kwargs, mode="greedy", seed=seed)
        print(checkpoint)
        for goal, moves in zip(goals.tolist(), played.actions.reshape(len(goals), episodes, -1)):
            print(f"  goal {goal}: " + " | ".join("".join(".^>v<"[move] for move in episode) for episode in moves))


def averaged(checkpoints: list[Path]):
    """One model whose weights are the mean of several checkpoints' of one run (weight averaging)."""
    models = [load_model(checkpoint)[0] for checkpoint in checkpoints]
    states = [model.state_dict() for model in models]
    models[0].load_state_dict({name: torch.stack([state[name].float() for state in states]).mean(0).to(value.dtype)
                               for name, value in states[0].items()})
    return models[0]


def average(checkpoints: list[Path], seed: int = 0):
    """Print the validation figures (as the candidates log them) of the mean of these checkpoints' weights:
    does averaging the mid-training checkpoints, where greedy exploration comes and goes, keep it?"""
    torch.set_num_threads(1)
    figures = validation_figures(averaged(checkpoints), "DarkRoom", task_split("DarkRoom", "validation"), 40, seed=seed)
    print(json.dumps({"average_of": [str(checkpoint) for checkpoint in checkpoints], **figures}), flush=True)


class Ensemble(torch.nn.Module):
    """Several whole-history models as one: its prediction is the mean of theirs (of the action probabilities),
    each member reading the same context into its own cache."""

    def __init__(self, models):
        super().__init__()
        shapes = {(model.config.window_steps, model.config.num_actions, model.config.num_obs) for model in models}
        if len(shapes) != 1:
            raise ValueError(f"the members differ in (window, actions, observations): {sorted(shapes)}; an ensemble "
                             f"needs models of one window and environment")
        self.members = torch.nn.ModuleList(models)
        self.config = models[0].config

    def new_cache(self, batch_size: int, chunk_steps: int = 1):
        return [member.new_cache(batch_size, chunk_steps) for member in self.members]

    def forward(self, observations, prev_actions, prev_rewards, cache=None):
        caches = [None] * len(self.members) if cache is None else cache
        log_probs = torch.stack([member(observations, prev_actions, prev_rewards, cache=member_cache).log_softmax(-1)
                                 for member, member_cache in zip(self.members, caches)])
        return torch.logsumexp(log_probs, 0) - math.log(len(self.members))


def ensemble(checkpoints: list[Path], seed: int = 0):
    """Print the validation figures (as the candidates log them) and the --agreement figures of the mean of
    these checkpoints' predictions: are the models' departures from a perfect fit on their own contexts
    each seed's own, which averaging independently trained seeds would cancel, or shared?"""
    torch.set_num_threads(1)
    loaded = [load_model(checkpoint) for checkpoint in checkpoints]
    model = Ensemble([member for member, _ in loaded])
    figures = validation_figures(model, "DarkRoom", task_split("DarkRoom", "validation"), 40, seed=seed)
    print(json.dumps({"ensemble_of": [str(checkpoint) for checkpoint in checkpoints], **figures,
                      **agreement_figures(model, loaded[0][1])}), flush=True)


def bayes(floors: list[float], seed: int = 1, prior: str = "uniform"):
    """The Bayes-optimal predictor of the AD^eps demonstrator (icrl_lab.probe.bayes), the whole history in its
    window, under the adeps protocol on the 16 test goals: what a perfect fit of the data would do, greedily
    and by sampling. prior "uniform": every cell as likely a goal (a fit that generalizes to unseen goals);
    "fit": the 57 goals the whole-history recipe trains on (the best prediction of its training data
    itself). Nothing is trained or chosen here."""
    cells = None if prior == "uniform" else goal_prior(task_split("DarkRoom", "fit"), 9)
    for floor in floors:
        epsilon = LinearSchedule().with_floor(floor).values(DARK_ROOM["num_steps"])
        best_in_data = best_in_data_on_test_goals(floor)
        for mode in ("greedy", "sample"):
            print(json.dumps({"floor": floor, "goal_prior": prior, "decoding": mode,
                              **bayes_protocol_figures(epsilon, best_in_data, mode, seed, cells)}), flush=True)


def bayes_protocol_figures(epsilon, best_in_data: float, mode: str = "greedy", seed: int = 1, cells=None) -> dict:
    """The perfect fit, reading `epsilon` at the places of its whole-history window, under the adeps protocol
    on the 16 test goals, beside the data's best policy there (`best_in_data`)."""
    protocol, goals = PROTOCOLS["adeps"], dark_room_goals("test")
    return protocol_figures(*bayes_rollout(np.repeat(goals, protocol.rollouts_per_task, axis=0), epsilon, len(epsilon),
                                           protocol.episodes_for("DarkRoom"), mode, seed, goal_prior=cells),
                            best_in_data, seed)


def constant_noise_histories(family: str, tasks, levels, seed: int, histories_per_task: int = 1,
                             num_steps: int = 400) -> Histories:
    """The demonstrator's histories at each of these constant noise `levels` (seeds seed, seed + 1, ...): what
    a window cut anywhere in a long history whose noise falls slowly holds, nearly one level."""
    return join_histories([collect_noise_distillation(family, tasks, num_steps=num_steps,
                                                      histories_per_task=histories_per_task, seed=seed + index,
                                                      schedule=LinearSchedule(start=level), floor=level)
                           for index, level in enumerate(levels)])


def agreement_paper_pace(checkpoints: list[Path], seed: int = 5):
    """`--agreement` for sliding-window Dark Room models trained at the paper's pace: how far each one's
    prediction is from the perfect fit of such data (`probe.UnknownNoiseBayesAgent`, its prior the model's
    data's schedule over a long history), before and after a history's first reward, on the validation
    goals: on the demonstrator's 400-step histories at constant noise levels from the floor to 1 (a window of
    the paper's pace holds one level), and on the model's own greedy rollouts of 20 episodes."""
    validation = study_goals("validation")
    for checkpoint in checkpoints:
        model, record = load_model(checkpoint)
        source, window = record["data"]["source"], model.config.window_steps
        levels = epsilon_levels(schedule_of(source), PAPER_PACE["num_steps"])  # the shares do not depend on the length
        demonstrator = constant_noise_histories("DarkRoom", validation, np.linspace(source["floor"], 1, 5), seed,
                                                histories_per_task=2)
        _, own = in_context_rollout(model, "DarkRoom", np.repeat(validation, 4, axis=0), 20, mode="greedy", seed=seed)
        line = {"checkpoint": str(checkpoint), "floor": source["floor"]}
        for name, histories in (("demonstrator", demonstrator), ("own_greedy", own)):
            line[f"validation: {name}"] = prediction_gap(
                unknown_noise_action_probabilities(histories, *levels, window),
                model_action_log_probs(model, histories, whole_history=False), histories)
        print(json.dumps(line), flush=True)


def agreement_key_to_door(checkpoints: list[Path], seed: int = 5, tasks: int = 10):
    """`--agreement` for Key-to-Door checkpoints: how far each one's prediction is from the perfect fit of its
    data (`probe.KeyToDoorBayesAgent`, epsilon on 6 levels from the floor to 1 as the schedule spends them), on
    the first `tasks` validation tasks, by what each step seeks (`probe.key_to_door_parts`: the key; the door
    while the window shows none opened; the door while it shows one): on the demonstrator's 400-step histories
    at constant noise levels from the floor to 1 (a window cut anywhere in an 800-step history holds nearly
    one level), and on the model's own greedy rollouts of 30 episodes (4 a task); beside each, the gap of a
    uniform guess, which is what there is to learn; and with each, how often the model's and the fit's likeliest
    moves repeat the last move, and how often the history's moves push into a wall (`key_to_door_gap`)."""
    torch.set_num_threads(1)
    validation = task_split("DarkKeyToDoor", "validation")[:tasks]
    for checkpoint in checkpoints:
        model, record = load_model(checkpoint)
        source, window = record["data"]["source"], model.config.window_steps
        levels = epsilon_levels(schedule_of(source), KEY_TO_DOOR["num_steps"], 6)  # the recipe's and the studies' length
        demonstrator = constant_noise_histories("DarkKeyToDoor", validation, levels[0], seed)
        _, own = in_context_rollout(model, "DarkKeyToDoor", np.repeat(validation, 4, axis=0), 30, mode="greedy",
                                    seed=seed)
        line = {"checkpoint": str(checkpoint), "floor": source["floor"], "window_steps": window}
        for name, histories in (("demonstrator", demonstrator), ("own_greedy", own)):
            line[f"validation: {name}"], line[f"validation: {name}, uniform guessing"] = key_to_door_gap(
                model, histories, levels, window)
        print(json.dumps(line), flush=True)


def key_to_door_gap(model, histories: Histories, levels, window: int) -> tuple[dict, dict]:
    """How far a Key-to-Door model's prediction is from the perfect fit of its data (`levels`: the fit's noise
    levels and weights) along `histories`, by what each step seeks (`probe.key_to_door_parts`); and the same
    gap for a guess with no context (every action alike), which is what there is to learn. (Its argmax is a
    tie, so only the divergence is kept.) Beside them, how often the model's likeliest move and the fit's
    repeat the move just made (steps after an episode's first): does the model carry on its own moves more
    than the fit would? And how often the history's own move pushed into a wall (steps before an episode's
    last)."""
    fit, parts = key_to_door_action_probabilities(histories, *levels, window), key_to_door_parts(histories, window)
    log_probs = model_action_log_probs(model, histories, whole_history=False)
    gap = prediction_gap(fit, log_probs, histories, parts)
    uniform = prediction_gap(fit, np.full(fit.shape, -np.log(fit.shape[-1])), histories, parts)
    previous = np.concatenate([np.full_like(histories.actions[:, :1], -1), histories.actions[:, :-1]], axis=1)
    episode_start = np.concatenate([np.ones_like(histories.dones[:, :1], dtype=bool),
                                    histories.dones[:, :-1].astype(bool)], axis=1)
    fit_at_previous = np.take_along_axis(fit, np.maximum(previous, 0)[..., None], -1)[..., 0]
    repeats = part_means({part: steps & ~episode_start for part, steps in parts.items()},
                         {"model_argmax_repeats_previous_move": log_probs.argmax(-1) == previous,
                          "fit_argmax_repeats_previous_move": fit_at_previous >= fit.max(-1) - 1e-9})
    stays = np.zeros_like(episode_start)
    stays[:, :-1] = histories.observations[:, 1:] == histories.observations[:, :-1]
    episode_goes_on = np.zeros_like(episode_start)
    episode_goes_on[:, :-1] = ~histories.dones[:, :-1].astype(bool)
    walls = part_means({part: steps & episode_goes_on for part, steps in parts.items()},
                       {"move_into_a_wall": stays & (histories.actions != NOOP)})
    gap = {part: {**figures, **{key: value for key, value in {**repeats[part], **walls[part]}.items()
                                if key != "share_of_steps"}}
           for part, figures in gap.items()}
    return gap, {part: {key: value for key, value in figures.items() if key != "argmax_agrees"}
                 for part, figures in uniform.items()}


def bayes_paper_pace(floors: list[float], seed: int = 1, window_steps: int = 80, levels: int = 21):
    """The perfect fit of the paper's own setting: its pace (one long history per goal, so a window's epsilon
    is all but constant and unknown) and its 80-step window, under the adeps protocol on the test goals,
    greedily and by sampling. Nothing is trained or chosen."""
    protocol, goals = PROTOCOLS["adeps"], dark_room_goals("test")
    for floor in floors:
        levels_and_weights = epsilon_levels(LinearSchedule().with_floor(floor), PAPER_PACE["num_steps"], levels)
        best_in_data = best_in_data_on_test_goals(floor)
        for mode in ("greedy", "sample"):
            frame, played = unknown_noise_bayes_rollout(np.repeat(goals, protocol.rollouts_per_task, axis=0),
                                                        *levels_and_weights, window_steps,
                                                        protocol.episodes_for("DarkRoom"), mode, seed)
            print(json.dumps({"floor": floor, "window_steps": window_steps, "decoding": mode,
                              **protocol_figures(frame, played, best_in_data, seed)}), flush=True)


def bayes_key_to_door(seed: int = 1, levels: int = 6):
    """The perfect fit of the shipped Key-to-Door recipe's data (its windows cut anywhere in 800-step histories,
    so epsilon unknown; `probe.KeyToDoorBayesAgent`, epsilon on `levels` levels from the floor to 1) under the
    adeps protocol on the 50 held-out tasks (1,000 episodes, greedy), beside the no-model control on the same
    tasks and seed and the data's best policy. One rollout per task, where the protocol has 4: the fit costs
    about 45 ms a step for 50 tasks on one core. Nothing is trained or chosen."""
    model, record = load_shipped("key_to_door_adeps")
    source, window = record["data"]["source"], model.config.window_steps
    protocol, tasks = PROTOCOLS["adeps"], key_to_door_tasks("test")
    episodes = protocol.episodes_for("DarkKeyToDoor")
    epsilons, weights = epsilon_levels(schedule_of(source), record["recipe"]["data"]["num_steps"], levels)
    fit = key_to_door_bayes_rollout(tasks, epsilons, weights, window, episodes, "greedy", seed)
    env = make_batched("DarkKeyToDoor", tasks)
    no_model = play(env, MemoryAgent(env, seed), episodes, seed)
    tables = {name: rollout_table(frame, played, 1, protocol.last) for name, (frame, played) in
              (("perfect_fit", fit), ("no_model", no_model))}
    best_in_data = demonstrator_return("DarkKeyToDoor", tasks, source["floor"], episodes_per_task=256, seed=1)
    line = {"floor": source["floor"], "window_steps": window, "epsilons": epsilons.round(3).tolist(),
            "episodes": episodes, "rollouts_per_task": 1, "evaluation_seed": seed, "best_in_data": best_in_data}
    for name, table in tables.items():
        line[name] = {"first": with_ci(table["first"], seed), "last10": with_ci(table["last10"], seed),
                      "ratio_to_best_in_data": float(table["last10"].mean() / best_in_data),
                      "median_first_reward_episode": float(table["first_reward_episode"].median())}
    line["perfect_fit_minus_no_model"] = {
        key: compare(tables["perfect_fit"][key], tables["no_model"][key], seed=seed)
        for key in ("last10", "first_reward_episode")}
    print(json.dumps(line), flush=True)


def key_to_door_outcomes(checkpoints: list[Path], seed: int = 1, split: str = "test"):
    """How each Key-to-Door checkpoint's episodes end under the adeps protocol on the 50 held-out tasks (greedy,
    1,000 episodes, 4 rollouts a task), beside the no-model control: the share of the last 10 episodes that
    return 0 (no key), 1 (the key, not the door) and 2 (the key, then the door), and the median episode of a
    rollout's first door (the number played where it never opens one). First, the same shares for the data's
    best policy (the demonstrator at its floor, 256 episodes a task). `split` "train" or "fit" plays the first 50
    tasks of that split instead: tasks the models trained on."""
    torch.set_num_threads(1)
    played = task_split("DarkKeyToDoor", split)[:len(key_to_door_tasks("test"))]
    protocol, tasks = PROTOCOLS["adeps"], np.repeat(played, PROTOCOLS["adeps"].rollouts_per_task, axis=0)
    episodes = protocol.episodes_for("DarkKeyToDoor")

    def outcomes(frame) -> dict:
        returns = frame.pivot(index="task", columns="episode", values="return").to_numpy()
        opened = returns >= 2
        last = returns[:, -protocol.last:]
        return {**{f"share_last10_return_{value}": float((last == value).mean()) for value in (0, 1, 2)},
                "median_first_door_episode": float(np.median(np.where(opened.any(axis=1), opened.argmax(axis=1), episodes)))}

    floor = load_shipped("key_to_door_adeps")[1]["data"]["source"]["floor"]
    returns = demonstrator_returns("DarkKeyToDoor", played, floor, episodes_per_task=256, seed=seed)
    print(json.dumps({"agent": "the data's best policy (the demonstrator at its floor, one episode)", "tasks": split,
                      "floor": floor,
                      **{f"share_return_{value}": float((returns == value).mean()) for value in (0, 1, 2)}}), flush=True)
    env = make_batched("DarkKeyToDoor", tasks)
    print(json.dumps({"agent": "no_model", "tasks": split, **outcomes(play(env, MemoryAgent(env, seed), episodes, seed)[0])}),
          flush=True)
    for checkpoint in checkpoints:
        model, _ = load_model(checkpoint)
        frame, _ = in_context_rollout(model, "DarkKeyToDoor", tasks, episodes, mode="greedy", seed=seed)
        print(json.dumps({"agent": str(checkpoint), "tasks": split, **outcomes(frame)}), flush=True)


def best_in_data_on_test_goals(floor: float) -> float:
    """The return of the best policy in AD^eps data whose floor is `floor` (its demonstrator at the floor) on
    the 16 test goals."""
    return demonstrator_return("DarkRoom", dark_room_goals("test"), floor, episodes_per_task=256, seed=1)


def protocol_figures(frame, played, best_in_data: float, seed: int = 1) -> dict:
    """The adeps protocol's figures of a rollout on the test goals, beside the data's best policy there: first
    and last-10 returns with intervals over goals, and the median episode of the first reward."""
    protocol = PROTOCOLS["adeps"]
    table = rollout_table(frame, played, protocol.rollouts_per_task, protocol.last)
    goal_values = per_task(table)
    return {"first": with_ci(goal_values["first"], seed), "last10": with_ci(goal_values["last10"], seed),
            "best_in_data": best_in_data, "ratio_to_best_in_data": float(goal_values["last10"].mean() / best_in_data),
            "median_first_reward_episode": float(table["first_reward_episode"].median())}


def loss_gap(checkpoints: list[Path], seed: int = 5):
    """Each whole-history checkpoint's loss per step against the lowest any model can reach (the Bayes-optimal
    predictor's, its prior uniform over the cells, and knowing the 57 fit goals), on fresh AD^eps histories of
    8 validation goals and of 8 of the fit goals the models trained on, at the checkpoint's own epsilon floor:
    over the steps before a history's first reward (where exploring is decided) and after it."""
    torch.set_num_threads(1)
    memorized = goal_prior(task_split("DarkRoom", "fit"), 9)
    for checkpoint in checkpoints:
        model, record = load_model(checkpoint)
        floor = record["data"]["source"]["floor"]
        line = {"checkpoint": str(checkpoint), "floor": floor}
        for part in ("validation", "fit"):
            data = collect_noise_distillation("DarkRoom", study_goals(part), num_steps=DARK_ROOM["num_steps"],
                                              histories_per_task=32, floor=floor, seed=seed)
            line[part] = loss_against_bayes(model, data, {"bayes": None, "bayes_knowing_fit_goals": memorized})
        print(json.dumps(line), flush=True)


def agreement(checkpoints: list[Path], seed: int = 5):
    """Each whole-history checkpoint's prediction beside a perfect fit's (uniform prior) on the same contexts:
    the demonstrator's histories (8 per goal) and the model's own greedy rollouts (4 per goal, one window),
    on the validation goals and on as many fit goals; per part, before and after a history's first reward."""
    torch.set_num_threads(1)
    for checkpoint in checkpoints:
        print(json.dumps(agreement_line(checkpoint, seed)), flush=True)


def agreement_line(checkpoint: Path, seed: int = 5) -> dict:
    """`agreement`'s figures for one checkpoint."""
    model, record = load_model(checkpoint)
    return {"checkpoint": str(checkpoint), **agreement_figures(model, record, seed)}


def agreement_figures(model, record: dict, seed: int = 5) -> dict:
    """`agreement`'s figures for a whole-history model trained on the data `record` names."""
    floor = record["data"]["source"]["floor"]
    epsilon = schedule_of(record["data"]["source"]).values(model.config.window_steps)
    line = {"floor": floor}
    for part in ("validation", "fit"):
        goals = study_goals(part)
        contexts = {"demonstrator": collect_noise_distillation("DarkRoom", goals, num_steps=model.config.window_steps,
                                                               histories_per_task=8, floor=floor, seed=seed),
                    "own_greedy": greedy_contexts(model, np.repeat(goals, 4, axis=0), epsilon, seed=seed)}
        for name, histories in contexts.items():
            line[f"{part}: {name}"] = compare_with_bayes(model, histories)
    return line


def place(checkpoints: list[Path], seed: int = 5):
    """How far into its curriculum does a whole-history model take each step of a window to be, and would a
    perfect fit that read the noise so still explore? A ridge read-out of the demonstrator's epsilon at each
    step from the model's last residual stream, fitted on the demonstrator's histories of the fit goals (4 per
    goal) and applied to fresh ones of the validation goals (8 per goal) and to the model's own greedy
    rollouts there (4 per goal): per episode of the window, the true epsilon beside the mean read-out on each
    kind of context. A model that takes its own straight runs for a late, nearly greedy demonstrator reads a
    lower epsilon on them than their place holds. Then the perfect fit under the protocol, reading epsilon as
    placed, as the model reads it on its own contexts, and as the floor at every place."""
    for checkpoint in checkpoints:
        model, record = load_model(checkpoint)
        floor, window = record["data"]["source"]["floor"], model.config.window_steps
        epsilon = schedule_of(record["data"]["source"]).values(window)

        def features(histories):  # the last layer's stream at every step, and a constant
            stream = residual_stream(model, histories)[-1].reshape(-1, model.config.d_model)
            return np.hstack([stream, np.ones((len(stream), 1))])

        fit = collect_noise_distillation("DarkRoom", study_goals("fit"), num_steps=window, histories_per_task=4,
                                         floor=floor, seed=seed)
        features_fit = features(fit)
        target = np.tile(epsilon, fit.num_histories)
        ridge = 1e-3 * len(features_fit) * np.eye(features_fit.shape[1])
        weights = np.linalg.solve(features_fit.T @ features_fit + ridge, features_fit.T @ target)
        validation = study_goals("validation")
        contexts = {"demonstrator": collect_noise_distillation("DarkRoom", validation, num_steps=window,
                                                               histories_per_task=8, floor=floor, seed=seed + 1),
                    "own_greedy": greedy_contexts(model, np.repeat(validation, 4, axis=0), epsilon, seed=seed)}
        read = {name: (features(histories) @ weights).reshape(-1, window) for name, histories in contexts.items()}
        by_episode = [{"episode": episode + 1, "epsilon": round(float(epsilon[episode * 20:(episode + 1) * 20].mean()), 3),
                       **{name: round(float(values[:, episode * 20:(episode + 1) * 20].mean()), 3)
                          for name, values in read.items()}} for episode in range(window // 20)]
        print(json.dumps({"checkpoint": str(checkpoint), "by_episode": by_episode}), flush=True)
        # Would reading the noise as this model reads it on its own contexts, or as the floor everywhere, stop a
        # perfect fit from exploring? Its greedy figures under the protocol (test goals, evaluation seed 1).
        misread = epsilon + np.repeat([line["own_greedy"] - line["epsilon"] for line in by_episode], 20)
        best_in_data = best_in_data_on_test_goals(floor)
        for name, read_epsilon in (("as placed", epsilon), ("as the model reads its own contexts", misread),
                                   ("the floor at every place", np.full(window, epsilon[-1]))):
            print(json.dumps({"checkpoint": str(checkpoint), "perfect_fit_reading_epsilon": name,
                              **bayes_protocol_figures(np.clip(read_epsilon, 0, 1), best_in_data)}), flush=True)


def margins(checkpoint: Path = SHIPPED_WHOLE_HISTORY, seed: int = 0):
    """How much a perfect fit's greedy choice rests on, episode by episode of a whole-history window: its own
    greedy rollout (uniform prior, the checkpoint's noise schedule, 4 per goal on as many fit goals as there
    are validation goals), and at each step before the first reward the difference between its two most
    probable actions' probabilities, beside the demonstrator's epsilon there. Nothing is trained or chosen."""
    model, record = load_model(checkpoint)
    window = model.config.window_steps
    epsilon = schedule_of(record["data"]["source"]).values(window)
    _, played = bayes_rollout(np.repeat(study_goals("fit"), 4, axis=0), epsilon, window, window // 20, seed=seed)
    played = with_window_epsilon(played, epsilon)
    ranked = np.sort(bayes_action_probabilities(played), axis=-1)
    before = (np.cumsum(played.rewards, axis=1) - played.rewards) == 0
    for episode in range(window // 20):
        steps = slice(episode * 20, (episode + 1) * 20)
        searching = before[:, steps]
        line = {"episode": episode + 1, "epsilon_at_start": float(epsilon[episode * 20]),
                "share_of_steps_before_first_reward": float(searching.mean())}
        if searching.any():
            line["median_margin"] = float(np.median((ranked[:, steps, -1] - ranked[:, steps, -2])[searching]))
            line["median_top_probability"] = float(np.median(ranked[:, steps, -1][searching]))
        print(json.dumps(line), flush=True)


def explore(checkpoints: list[Path], episodes: int = 40, seed: int = 0):
    """How each Dark Room checkpoint's greedy policy searches before its first reward, on the validation goals
    and on as many fit goals (4 rollouts each), beside a perfect fit (uniform prior, greedy) and a uniformly
    random policy on the same goals and steps: means over rollouts with 95% intervals."""
    torch.set_num_threads(1)
    for checkpoint in checkpoints:
        model, record = load_model(checkpoint)
        epsilon = schedule_of(record["data"]["source"]).values(model.config.window_steps)
        for part in ("validation", "fit"):
            tasks = np.repeat(study_goals(part), 4, axis=0)
            policies = {
                "model": in_context_rollout(model, "DarkRoom", tasks, episodes, mode="greedy", seed=seed)[1],
                "perfect fit": bayes_rollout(tasks, epsilon, model.config.window_steps, episodes, seed=seed)[1],
                "random": random_histories("DarkRoom", tasks, episodes * 20, seed=seed)}
            summary, _ = compare_exploration(policies, seed=seed)
            figures = {f"{row.policy}: {row.measure}": [round(row.mean, 3), round(row.low, 3), round(row.high, 3)]
                       for row in summary.itertuples()}
            print(json.dumps({"checkpoint": str(checkpoint), "goals": part, **figures}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="all")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--updates", type=int, help="train this many updates rather than sizing the run to --minutes")
    parser.add_argument("--stop-at", type=int, help="stop after this many of the run's updates (its schedule still "
                        "spans them all), to regenerate a checkpoint chosen on the validation goals")
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="*", help="with 'all': train every candidate with each of these seeds")
    parser.add_argument("--only", nargs="*", help="with 'all': these candidates only")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--per-goal", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print these Dark Room checkpoints' greedy last-10 return on every test goal (--seed: "
                             "the evaluation seed) and stop")
    parser.add_argument("--versus", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="with --per-goal: also these checkpoints, and the difference of the two groups' means "
                             "paired by goal")
    parser.add_argument("--average", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print the validation figures of the mean of these Dark Room checkpoints' weights "
                             "(--seed: the run's training seed) and stop")
    parser.add_argument("--ensemble", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print the validation figures (--seed: as for --average) and the --agreement figures of "
                             "the mean of these whole-history Dark Room checkpoints' predictions, and stop")
    parser.add_argument("--bayes", type=float, nargs="+", metavar="FLOOR",
                        help="print the Bayes-optimal predictor's figures under the adeps protocol on the test goals "
                             "for data with each of these epsilon floors (--seed: the evaluation seed) and stop")
    parser.add_argument("--bayes-paper-pace", type=float, nargs="+", metavar="FLOOR",
                        help="print the figures of a perfect fit of the paper's own setting (windows of 80 steps cut "
                             "anywhere in one long history per goal, so epsilon unknown) under the adeps protocol on "
                             "the test goals, for data with each of these epsilon floors (--seed: the evaluation "
                             "seed), and stop")
    parser.add_argument("--bayes-key-to-door", action="store_true",
                        help="print the figures of a perfect fit of the shipped Key-to-Door recipe's data under the "
                             "adeps protocol on the 50 held-out tasks, beside the no-model control (--seed: the "
                             "evaluation seed), and stop")
    parser.add_argument("--key-to-door-outcomes", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print how these Key-to-Door checkpoints' episodes end (no key, the key, the key and the "
                             "door) under the adeps protocol on the 50 held-out tasks, beside the no-model control "
                             "(--seed: the evaluation seed), and stop")
    parser.add_argument("--agreement-paper-pace", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print how far these sliding-window Dark Room checkpoints, trained at the paper's pace, "
                             "predict from a perfect fit of such data, on the demonstrator's contexts and on their own "
                             "greedy ones, and stop")
    parser.add_argument("--agreement-key-to-door", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print how far these Key-to-Door checkpoints predict from a perfect fit of their data, by "
                             "what each step seeks (the key, an unseen door, a door the window shows), on the "
                             "demonstrator's contexts and on their own greedy ones, and stop")
    parser.add_argument("--loss-gap", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print these whole-history Dark Room checkpoints' loss against the Bayes-optimal "
                             "predictor's on fresh validation-goal histories and stop")
    parser.add_argument("--paths", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print these Dark Room checkpoints' greedy moves on their --goals and stop")
    parser.add_argument("--explore", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print how these Dark Room checkpoints search before the first reward, on validation "
                             "and fit goals, beside a perfect fit and a random policy, and stop")
    parser.add_argument("--agreement", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print how far these whole-history Dark Room checkpoints' predictions are from a perfect "
                             "fit's, on the demonstrator's contexts and on their own greedy ones, and stop")
    parser.add_argument("--place", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="print, per episode of a whole-history window, the demonstrator's epsilon beside a linear "
                             "read-out of it from these checkpoints' last layer, on the demonstrator's contexts and on "
                             "their own greedy ones (validation goals), and stop")
    parser.add_argument("--track-agreement", action="store_true",
                        help="with a whole-history Dark Room candidate: also run --agreement on each stretch's "
                             "checkpoint, into OUT/NAME-seedS-agreement.jsonl")
    parser.add_argument("--resume", action="store_true",
                        help="go on with the run of the candidate (and --seed) in --out from its last finished stretch, "
                             "as an interrupted run or one cut short by --stop-at")
    parser.add_argument("--chosen", type=Path, metavar="LOG",
                        help="print the checkpoint copy that the run of this OUT/NAME-seedS.jsonl chooses on the "
                             "validation goals, as recipes.Selection does, and stop")
    parser.add_argument("--margins", action="store_true",
                        help="print, per episode of a perfect fit's greedy window, the probability margin its greedy "
                             "choice rests on before the first reward, and stop")
    parser.add_argument("--imitate", choices=TEACHERS,
                        help="imitation on the own contexts of the model of --start (Dark Room or Key-to-Door), "
                             "labelled by this teacher, for --rounds rounds of --updates updates (--out, --seed), "
                             "and stop")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--soft", action="store_true",
                        help="with --imitate: train on the teacher's action probabilities rather than on an action "
                             "drawn from them")
    parser.add_argument("--in-windows", action="store_true",
                        help="with --imitate and a Key-to-Door model: cut its rollouts and its data into pieces of the "
                             "model's window, each rollout piece labelled by a fit that starts where the piece starts, so "
                             "that a training window holds all its labels were read from")
    parser.add_argument("--start", type=Path, default=SHIPPED_WHOLE_HISTORY,
                        help="with --imitate: the checkpoint the first round starts from")
    parser.add_argument("--first-round", type=int, default=1,
                        help="with --imitate: the number of the first round (to go on with a run from --start, its "
                             "last round's checkpoint)")
    parser.add_argument("--goals", choices=("validation", "fit"), default="validation",
                        help="with --paths: the validation goals, or as many of the fit goals")
    parser.add_argument("--outcome-tasks", choices=("test", "train", "fit"), default="test",
                        help="with --key-to-door-outcomes: the 50 held-out tasks, or the first 50 of a training split")
    parser.add_argument("--goal-prior", choices=("uniform", "fit"), default="uniform",
                        help="with --bayes: the perfect fit's prior over goal cells")
    args = parser.parse_args()
    def flag(name):
        return "--" + name.replace("_", "-")
    for option, needs in (("versus", "per_goal"), ("rounds", "imitate"), ("soft", "imitate"), ("in_windows", "imitate"),
                          ("start", "imitate"), ("first_round", "imitate"), ("goals", "paths"), ("goal_prior", "bayes")):
        if getattr(args, option) != parser.get_default(option) and not getattr(args, needs):
            parser.error(f"{flag(option)} works only with {flag(needs)}; add it or leave {flag(option)} out")
    # Each probe runs alone and stops: a second probe or a training option beside it would be silently ignored.
    probe_runs = {
        "chosen": lambda: print(chosen_checkpoint(args.chosen)),
        "margins": margins,
        "imitate": lambda: imitation_rounds(args.imitate, args.rounds, args.updates or 600, args.out, args.seed,
                                            start=args.start, first_round=args.first_round, soft=args.soft,
                                            in_windows=args.in_windows),
        "paths": lambda: paths(args.paths, args.goals),
        "explore": lambda: explore(args.explore),
        "agreement": lambda: agreement(args.agreement),
        "agreement_paper_pace": lambda: agreement_paper_pace(args.agreement_paper_pace),
        "agreement_key_to_door": lambda: agreement_key_to_door(args.agreement_key_to_door),
        "place": lambda: place(args.place),
        "bayes": lambda: bayes(args.bayes, args.seed, args.goal_prior),
        "bayes_paper_pace": lambda: bayes_paper_pace(args.bayes_paper_pace, args.seed),
        "bayes_key_to_door": lambda: bayes_key_to_door(args.seed),
        "key_to_door_outcomes": lambda: key_to_door_outcomes(args.key_to_door_outcomes, args.seed, args.outcome_tasks),
        "loss_gap": lambda: loss_gap(args.loss_gap),
        "average": lambda: average(args.average, args.seed),
        "ensemble": lambda: ensemble(args.ensemble, args.seed),
        "list": lambda: print("\n".join(CANDIDATES)),
        "per_goal": lambda: per_goal(args.per_goal, args.seed, args.versus),
    }
    probes = [name for name in probe_runs if getattr(args, name)]
    training = [f"the candidate {args.name!r}"] * (args.name != "all") + [
        flag(name) for name in ("track_agreement", "only", "seeds", "stop_at", "resume") if getattr(args, name)]
    if len(probes) > 1 or (probes and training):
        parser.error(f"{flag(probes[0])} runs alone: leave out {', '.join([flag(name) for name in probes[1:]] + training)}")
    if probes:
        probe_runs[probes[0]]()
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.name != "all":
        run(args.name, args.minutes, args.out, args.seed, args.updates, args.stop_at, args.track_agreement, args.resume)
        return
    runs = [(name, seed) for name in args.only or list(CANDIDATES) for seed in args.seeds or [args.seed]]
    processes = [subprocess.Popen([sys.executable, __file__, name, "--minutes", str(args.minutes), "--out", str(args.out),
                                   "--seed", str(seed)] + (["--updates", str(args.updates)] if args.updates else [])
                                  + (["--stop-at", str(args.stop_at)] if args.stop_at else [])
                                  + (["--track-agreement"] if args.track_agreement else [])
                                  + (["--resume"] if args.resume else []))
                 for name, seed in runs]
    failed = [run for run, process in zip(runs, processes) if process.wait() != 0]
    if failed:
        sys.exit(f"candidates failed: {failed}")


if __name__ == "__main__":
    main()
