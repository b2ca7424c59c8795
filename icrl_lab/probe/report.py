"""One checkpoint, probed end to end: tables (CSV), figures (PNG) and the headline numbers.

`report(model, record, out_dir)` runs, on the held-out tasks of the checkpoint's environment family:
attention capture and head typing, head / layer / MLP ablations, context interventions (grid worlds),
linear probes of the residual stream, and the exploration comparison (grid worlds). The defaults take a
few minutes on two CPU cores for the shipped Dark Room model; `quick=True` shrinks everything for a smoke
run (the numbers are then noisy).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..envs import make_batched, task_split
from ..evaluate import in_context_rollout
from .ablation import ablation_effects, rank_heads
from .attention import attention_maps, attention_table, episode_attention, head_types, step_labels
from .exploration import compare_exploration, data_source_histories, random_histories
from .interventions import context_interventions
from .representations import probe_layers


def _save(figure, path: Path):
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def report(model, record: dict, out_dir, tasks=None, episodes: int = 16, rollouts: int = 8,
           modes=("greedy", "sample"), temperature: float = 1.0, context_episodes: int = 4, max_samples: int = 4000,
           attention_histories: int = 16, seed: int = 0, quick: bool = False) -> dict:
    """Probe `model` (with its checkpoint `record`) and write the results to `out_dir`; return the headlines.

    tasks: held-out tasks (default: the family's test split; 64 bandit tasks). episodes: in-context episodes
    per rollout (bandits: one episode of the environment's horizon); rollouts: sampled rollouts per task.
    Sampled play is at `temperature` (1: the model's own distribution). Files: head_types.csv,
    episode_attention.csv, attention_example.csv, ablation_effects.csv, ablation_units.csv,
    interventions.csv, intervention_contexts.csv, probes.csv, exploration.csv, coverage.csv,
    headline.json, and the figures head_types.png, attention.png, ablation.png, interventions.png,
    probes.png, coverage.png.
    """
    from .. import plots

    if quick:
        episodes, rollouts, max_samples, attention_histories = min(episodes, 8), min(rollouts, 2), min(max_samples, 800), 4
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    family, env_kwargs = record["env_family"], record.get("env_kwargs", {})
    tasks = task_split(family, "test", num_tasks=16 if quick else 64, seed=seed, size=env_kwargs.get("size", 9)) \
        if tasks is None else np.asarray(tasks)
    env = make_batched(family, tasks[:1], **env_kwargs)
    grid = hasattr(env, "size")
    episodes = episodes if grid else 1  # a bandit task is one long episode
    config = model.config
    headline = {"family": family, "tasks": len(tasks), "episodes": episodes, "rollouts": rollouts,
                "temperature": temperature}

    # What the model does, sampled: the histories every later step reads.
    units = np.repeat(tasks, rollouts, axis=0)
    _, played = in_context_rollout(model, family, units, episodes, env_kwargs, mode="sample", temperature=temperature,
                                   seed=seed)

    # 1. Where heads look.
    rows = np.arange(min(attention_histories, played.num_histories))
    maps = attention_maps(model, played, rows)
    types = head_types(maps, played, config.window_steps, config.num_actions, rows)
    types.to_csv(out / "head_types.csv", index=False)
    episode_attention(maps, played.dones[rows]).to_csv(out / "episode_attention.csv", index=False)
    attention_table(maps[:1], played, config.window_steps, config.num_actions, rows=rows[:1], min_weight=0.01) \
        .to_csv(out / "attention_example.csv", index=False)
    _save(plots.head_type_heatmap(types).figure, out / "head_types.png")
    labels = step_labels(played, config.num_actions)
    rewarded = np.flatnonzero(labels["reward"][0] > 0)
    query = int(min(rewarded[-1] + 5, played.num_steps - 1)) if len(rewarded) else played.num_steps - 1
    _save(plots.attention_over_history(maps, labels, 0, query), out / "attention.png")
    for feature in ("rewarded", "same_cell_earlier", "induction"):
        rows_ = types[types["feature"] == feature]
        if len(rows_):
            top = rows_.sort_values("lift_recency", ascending=False).iloc[0]
            headline[f"top_{feature}_head"] = {"head": f"L{top['layer']}H{top['head']}",
                                               "attention": round(float(top["attention"]), 3),
                                               "lift_recency": round(float(top["lift_recency"]), 2)}

    # 2. What heads, layers and MLPs are needed for.
    effects, metrics = ablation_effects(model, family, tasks, episodes, env_kwargs, modes=modes, temperature=temperature,
                                        rollouts=rollouts, seed=seed)
    effects.to_csv(out / "ablation_effects.csv", index=False)
    metrics.to_csv(out / "ablation_units.csv", index=False)
    _save(plots.ablation_bars(effects).figure, out / "ablation.png")
    for mode in modes:
        ranked = rank_heads(effects, mode)
        headline[f"heads_by_return_loss_{mode}"] = [
            {"head": r.part, "change": round(r.change, 3), "ci": [round(r.low, 3), round(r.high, 3)]}
            for r in ranked.head(3).itertuples()]
        every = effects[(effects["part"].astype(str) == "all heads") & (effects["mode"] == mode)].set_index("metric")
        headline[f"all_heads_{mode}"] = {metric: {"intact": round(float(every.loc[metric, "intact"]), 3),
                                                  "ablated": round(float(every.loc[metric, "ablated"]), 3)}
                                         for metric in ("return", "improvement")}

    # 3. What the context is used for (grid worlds, whose episodes can be edited).
    if grid and episodes > context_episodes:
        try:
            summary, per_context = context_interventions(model, played, context_episodes, seed=seed)
        except ValueError as error:  # no context holds a reward
            headline["interventions"] = str(error)
        else:
            summary.to_csv(out / "interventions.csv", index=False)
            per_context.to_csv(out / "intervention_contexts.csv", index=False)
            _save(plots.intervention_bars(summary), out / "interventions.png")
            table = summary.set_index(["intervention", "measure"])["mean"]
            headline["interventions"] = {name: {m: round(float(table[name, m]), 3) for m in
                                                ("return", "steps_on_goal", "steps_on_rewarded_cell")}
                                         for name in summary["intervention"].unique()}

    # 4. What the residual stream encodes, on held-out histories.
    test_rows = np.flatnonzero(np.arange(played.num_histories) % rollouts == 0) if rollouts > 1 else \
        np.random.default_rng(seed).permutation(played.num_histories)[:max(1, played.num_histories // 4)]
    probes = probe_layers(model, played, test_rows, max_samples=max_samples, seed=seed)
    probes.to_csv(out / "probes.csv", index=False)
    _save(plots.probe_accuracy(probes), out / "probes.png")
    headline["probes"] = {target: {"best_layer": int(rows_.loc[rows_["score"].idxmax(), "layer"]),
                                   "score": round(float(rows_["score"].max()), 3),
                                   "chance": round(float(rows_["chance"].iloc[0]), 3),
                                   "shuffled": round(float(rows_["shuffled"].max()), 3),
                                   **({"random_model": round(float(rows_["random_model"].max()), 3)}
                                      if "random_model" in rows_ else {})}
                          for target, rows_ in probes.groupby("target", sort=False)}

    # 5. How it searches before the first reward (grid worlds).
    if grid:
        policies = {f"model (sampled, T={temperature:g})": played}
        if "greedy" in modes:
            policies["model (greedy)"] = in_context_rollout(model, family, units, episodes, env_kwargs, mode="greedy",
                                                            seed=seed)[1]
        policies["uniform random"] = random_histories(family, units, played.num_steps, env_kwargs, seed)
        source = data_source_histories(record, units, played.num_steps, seed)
        if source is not None:
            policies["data source"] = source
        summary, curves = compare_exploration(policies, seed=seed)
        summary.to_csv(out / "exploration.csv", index=False)
        curves.to_csv(out / "coverage.csv", index=False)
        _save(plots.coverage_curves(curves).figure, out / "coverage.png")
        table = summary.set_index(["policy", "measure"])["mean"]
        headline["exploration"] = {policy: {m: round(float(table[policy, m]), 3) for m in
                                            ("first_reward_step", "found", "cells_before_reward", "revisit_rate")}
                                   for policy in policies}
    (out / "headline.json").write_text(json.dumps(headline, indent=2))
    return headline
