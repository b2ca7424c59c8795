"""Representation probes: what a linear read-out can find in the residual stream, layer by layer.

`residual_stream` captures the stream at every depth (0: the token embeddings, l: after block l).
`step_targets` says what each step's stream could encode: the goal cell (for grid worlds, one target
per cell the task hides; decodable only from what the context showed, so also scored alone on the
steps whose context has shown a reward and that are not on the goal), whether the context has shown
a reward, which cells the context has shown to be empty (multi-label), and for bandits the best arm.
`probe_layers` fits a linear probe (logistic regression in torch, L-BFGS) per target and depth on some
histories and scores it on held-out ones, beside three references:

- chance: the accuracy of the best constant guess on the test labels (multi-class), or 0.5 balanced accuracy;
- shuffled: the same probe trained on labels shuffled across histories (what structure alone gives);
- random model: the same probe on the stream of a model with the same architecture and random weights
  (what the embeddings of the inputs alone make decodable).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from ..envs import make_batched
from ..histories import Histories, model_inputs, previous_actions_and_rewards, within_last
from ..models import ICRLTransformer
from .attention import marked_cells


@torch.no_grad()
def residual_stream(model, histories: Histories, rows=None, steps: int | None = None) -> np.ndarray:
    """The residual stream at each depth for every step, shape (layers + 1, histories, steps, d_model):
    depth 0 is the input to the first block, depth l the output of block l (at each step's last token)."""
    captured = []
    hooks = [model.blocks[0].register_forward_pre_hook(lambda module, args: captured.append(args[0]))]
    hooks += [block.register_forward_hook(lambda module, args, output: captured.append(output[0])) for block in model.blocks]
    model.eval()
    try:
        model(*model_inputs(histories, model.config.num_actions, next(model.parameters()).device, rows, steps))
    finally:
        for hook in hooks:
            hook.remove()
    tokens = model.config.tokens_per_step
    return torch.stack([x[:, tokens - 1::tokens] for x in captured]).float().cpu().numpy()


def step_targets(histories: Histories, num_actions: int, window_steps: int) -> dict:
    """name -> (kind, labels, counted): what to decode at each step. kind is "multiclass" (labels
    (histories, steps) ints), "binary" ((histories, steps) 0/1) or "multilabel" ((histories, steps, labels)
    0/1); counted (histories, steps) marks the steps the target is scored on."""
    steps = histories.num_steps
    _, prev_rewards = previous_actions_and_rewards(histories, num_actions)
    everywhere = np.ones((histories.num_histories, steps), dtype=bool)
    # A reward is in view when a token in the window (the step itself and the window_steps - 1 before) carries one.
    shown = within_last(prev_rewards > 0, window_steps)
    targets = {"reward_in_context": ("binary", shown.astype(np.int64), everywhere)}
    metadata = histories.metadata
    env = make_batched(metadata["env_family"], histories.tasks, **metadata.get("env_kwargs", {}))
    marks = marked_cells(histories)
    if marks.any():
        size = env.size
        for name in env.task_marks(histories.tasks[0]):
            cells = np.array([(lambda rc: rc[0] * size + rc[1])(env.task_marks(task)[name]) for task in histories.tasks])
            labels = np.broadcast_to(cells[:, None], (histories.num_histories, steps))
            targets[f"{name}_cell"] = ("multiclass", labels, everywhere)
            # Read off where the agent is not standing on it: else the current cell alone would give it away.
            elsewhere = shown & (histories.observations != cells[:, None])
            targets[f"{name}_cell | reward shown"] = ("multiclass", labels, elsewhere)
        cells = histories.observations.astype(np.int64)
        onehot = np.zeros((histories.num_histories, steps, marks.shape[1]), dtype=np.int64)
        np.put_along_axis(onehot, cells[..., None], 1, axis=2)
        cumulative = np.cumsum(onehot, axis=1)
        before = np.concatenate([np.zeros_like(cumulative[:, :window_steps]), cumulative], 1)[:, :steps]
        seen = ((cumulative - before) > 0) & ~marks[:, None, :]
        targets["seen_empty_cells"] = ("multilabel", seen.astype(np.int64), everywhere)
    else:
        env.reset_rows(seed=0)
        best = np.asarray(env.optimal_actions(), dtype=np.int64)
        targets["best_arm"] = ("multiclass", np.broadcast_to(best[:, None], (histories.num_histories, steps)), everywhere)
    return targets


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, kind: str, iterations: int = 100,
                     weight_decay: float = 1e-3, seed: int = 0):
    """Logistic regression on standardised features, with an L2 penalty; returns predict(features) ->
    labels (0/1 per label for binary and multilabel, whose classes are weighted to balance)."""
    torch.manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    if kind == "multiclass":
        classes, y = np.unique(labels, return_inverse=True)
        y = torch.as_tensor(y)
        outputs = len(classes)
    else:
        y = torch.as_tensor(labels, dtype=torch.float32).reshape(len(x), -1)
        outputs = y.shape[1]
        # Positives weighted as much as negatives in all, so that the 0 threshold suits balanced accuracy.
        positives = y.sum(0)
        balance = (len(y) - positives) / positives.clamp(min=1.0)
    weight = torch.zeros(x.shape[1], outputs, requires_grad=True)
    bias = torch.zeros(outputs, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = x @ weight + bias
        loss = F.cross_entropy(logits, y) if kind == "multiclass" else \
            F.binary_cross_entropy_with_logits(logits, y, pos_weight=balance)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    @torch.no_grad()
    def predict(new_features):
        logits = ((torch.as_tensor(new_features, dtype=torch.float32) - mean) / std) @ weight + bias
        if kind == "multiclass":
            return classes[logits.argmax(-1).numpy()]
        predicted = (logits > 0).numpy().astype(np.int64)
        return predicted[:, 0] if kind == "binary" else predicted
    return predict


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates; for multi-label, averaged over the labels that
    have both classes among the truth."""
    truth, predicted = np.asarray(truth).reshape(len(truth), -1), np.asarray(predicted).reshape(len(truth), -1)
    scores = []
    for column in range(truth.shape[1]):
        positive = truth[:, column] == 1
        if positive.all() or not positive.any():
            continue
        scores.append(((predicted[positive, column] == 1).mean() + (predicted[~positive, column] == 0).mean()) / 2)
    return float(np.mean(scores)) if scores else float("nan")


def score(truth, predicted, kind: str) -> float:
    return float((np.asarray(truth) == np.asarray(predicted)).mean()) if kind == "multiclass" \
        else balanced_accuracy(truth, predicted)


def probe_layers(model, histories: Histories, test_rows, targets: dict | None = None, max_samples: int = 6000,
                 iterations: int = 100, seed: int = 0, random_model: bool = True) -> pd.DataFrame:
    """Fit and score a linear probe per target and depth of the residual stream.

    histories: what the model played (several histories per task, so that held-out histories share the
    training ones' tasks); test_rows: the histories held out for scoring. At most `max_samples` training
    steps and as many test steps are used (drawn at random). Returns one row per (target, layer) with
    columns kind, metric, score, chance, shuffled, random_model (the trained probe's score on a random-weights
    model's stream), train_samples, test_samples.
    """
    rng = np.random.default_rng(seed)
    targets = targets or step_targets(histories, model.config.num_actions, model.config.window_steps)
    test = np.zeros(histories.num_histories, dtype=bool)
    test[np.asarray(test_rows)] = True
    streams = {"trained": residual_stream(model, histories)}
    if random_model:
        torch.manual_seed(seed)
        streams["random"] = residual_stream(ICRLTransformer(model.config).to(next(model.parameters()).device), histories)
    permutation = rng.permutation(np.flatnonzero(~test))
    shuffled_rows = np.arange(histories.num_histories)
    shuffled_rows[np.flatnonzero(~test)] = permutation  # train histories take another train history's labels
    records = []
    for name, (kind, labels, counted) in targets.items():
        chosen = {}
        for split, rows in (("train", ~test), ("test", test)):
            history, step = np.nonzero(counted & rows[:, None])
            if len(history) > max_samples:
                pick = rng.choice(len(history), max_samples, replace=False)
                history, step = history[pick], step[pick]
            chosen[split] = (history, step)
        (train_h, train_s), (test_h, test_s) = chosen["train"], chosen["test"]
        if len(train_h) == 0 or len(test_h) == 0:
            continue
        y_train, y_test = labels[train_h, train_s], labels[test_h, test_s]
        y_shuffled = labels[shuffled_rows[train_h], train_s]
        if kind == "multiclass":
            chance = float(np.unique(y_test, return_counts=True)[1].max() / len(y_test))  # best constant guess
        else:
            chance = 0.5
        for layer in range(streams["trained"].shape[0]):
            features = streams["trained"][layer]
            predict = fit_linear_probe(features[train_h, train_s], y_train, kind, iterations, seed=seed)
            shuffled = fit_linear_probe(features[train_h, train_s], y_shuffled, kind, iterations, seed=seed)
            record = {"target": name, "layer": layer, "kind": kind,
                      "metric": "accuracy" if kind == "multiclass" else "balanced accuracy",
                      "score": score(y_test, predict(features[test_h, test_s]), kind), "chance": chance,
                      "shuffled": score(y_test, shuffled(features[test_h, test_s]), kind),
                      "train_samples": len(train_h), "test_samples": len(test_h)}
            if random_model:
                random_features = streams["random"][layer]
                random_probe = fit_linear_probe(random_features[train_h, train_s], y_train, kind, iterations, seed=seed)
                record["random_model"] = score(y_test, random_probe(random_features[test_h, test_s]), kind)
            records.append(record)
    return pd.DataFrame(records)
