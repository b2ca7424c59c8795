"""Probing a trained in-context learner: what it looks at, what it uses, what it knows, how it searches.

Attention that looks at something is not evidence that it matters. Each module answers one question,
and the later ones test what the earlier ones suggest:

- `attention`: where each head looks (`attention_maps`, the tidy `attention_table`), and `head_types`:
  its attention to rewarded steps, the previous step, the same cell in earlier episodes, the step after
  an earlier visit to the current cell, against uniform and recency-matched baselines;
- `ablation`: remove heads, a layer's attention or the MLPs (`ablated`) and measure the change of
  in-context return, improvement and first rewarded episode, with bootstrap intervals (`ablation_effects`);
- `interventions`: edit the context (drop episodes, zero, shuffle or move the rewards, empty it) and
  watch the next episode (`context_interventions`);
- `representations`: linear probes on the residual stream, layer by layer, against chance, shuffled
  labels and a random-weights model (`probe_layers`);
- `exploration`: coverage and revisits before the first reward, against random and the data's source;
- `bayes`: what a perfect fit of AD^eps Dark Room data would do in context (`BayesDemonstratorAgent`,
  `bayes_rollout`): the demonstrator's posterior predictive, the lowest loss a model can reach
  (`loss_against_bayes`), for a prior over all cells or over the training goals (`goal_prior`), and how
  far a model's prediction is from it on the demonstrator's contexts and on its own (`compare_with_bayes`,
  `greedy_contexts`, `with_window_epsilon` for any rollout); and of the paper's own pace, where a window's
  epsilon is unknown (`UnknownNoiseBayesAgent`, `epsilon_levels`, `unknown_noise_bayes_rollout`,
  `unknown_noise_action_probabilities` along any histories);
- `bayes_key_to_door`: the same for AD^eps Key-to-Door data, its posterior over (epsilon, key, door)
  (`KeyToDoorBayesAgent`, `key_to_door_bayes_rollout`, `key_to_door_action_probabilities` along any histories,
  split by what each step seeks with `key_to_door_parts`);
- `report`: all of it for one checkpoint, written as CSV tables and PNG figures.
"""
from .ablation import ablated, ablation_effects, rank_heads, standard_ablations, unit_metrics
from .bayes import (BayesDemonstratorAgent, UnknownNoiseBayesAgent, bayes_action_log_probs, bayes_action_probabilities,
                    bayes_rollout, compare_with_bayes, epsilon_levels, goal_prior, greedy_contexts, loss_against_bayes,
                    model_action_log_probs, prediction_gap,
                    unknown_noise_action_probabilities, unknown_noise_bayes_rollout, with_window_epsilon)
from .bayes_key_to_door import (KeyToDoorBayesAgent, cells_reached, key_to_door_action_probabilities,
                                key_to_door_bayes_rollout, key_to_door_parts)
from .attention import (FEATURES, attention_maps, attention_table, episode_attention, head_types,
                        key_features, marked_cells, recency_profile, reward_attention, step_labels)
from .exploration import compare_exploration, data_source_histories, exploration_stats, random_histories
from .interventions import INTERVENTIONS, context_interventions, continue_in_context, edit_context, reached_cells
from .report import report
from .representations import balanced_accuracy, fit_linear_probe, probe_layers, residual_stream, step_targets
