"""History sources: demonstrators, RL algorithms that must learn, schedules and the calibrated floor."""
import json
from dataclasses import replace

import numpy as np
import pytest

from icrl_lab import curricula
from icrl_lab.curricula import calibrate_floor, collect_noise_distillation, demonstrator_return, demonstrator_returns
from icrl_lab.envs import bandit_tasks, dark_room_goals, key_to_door_tasks, make_batched
from icrl_lab.recipes import RECIPES
from icrl_lab.schedules import ExponentialSchedule, LinearSchedule, StepSchedule, make_schedule, schedule_of
from icrl_lab.sources import collect_rl_histories, optimal_returns

TRAIN_GOALS = dark_room_goals("train")


def first_and_last(histories, n):
    returns = histories.episode_returns()
    return np.nanmean(returns[:, :n]), np.nanmean(returns[:, -n:])


def test_q_learning_histories_improve():
    histories = collect_rl_histories("DarkRoom", TRAIN_GOALS, "q_learning", num_steps=20 * 150, seed=0)
    first, last = first_and_last(histories, 10)
    optimal = optimal_returns("DarkRoom", TRAIN_GOALS).mean()
    assert first < 0.1 * optimal and last > 0.7 * optimal


@pytest.mark.parametrize("algorithm", ["ucb1", "thompson"])
def test_bandit_algorithms_learn_the_best_arm(algorithm):
    tasks = bandit_tasks(200, k=5, seed=1)
    histories = collect_rl_histories("BernoulliBandit", tasks, algorithm, num_steps=500, seed=0)
    best = tasks.argmax(axis=1)[:, None]
    early = (histories.actions[:, :50] == best).mean()
    late = (histories.actions[:, -100:] == best).mean()
    assert late > early + 0.2 and late > 0.6
    assert np.all(histories.optimal_actions == best)


def test_random_policy_with_dirichlet_mixing_varies_across_tasks():
    histories = collect_rl_histories("BernoulliBandit", bandit_tasks(50, seed=0), "random", num_steps=400,
                                     seed=0, concentration=0.3, env_kwargs={"horizon": 400})
    shares = np.stack([(histories.actions == a).mean(axis=1) for a in range(5)], axis=1)
    assert shares.max(axis=1).mean() > 0.5, "Dirichlet(0.3) mixtures favour a few arms in each task"


def test_demonstrator_extremes():
    optimal = optimal_returns("DarkRoom", TRAIN_GOALS).mean()
    assert demonstrator_return("DarkRoom", TRAIN_GOALS, 0.0) == pytest.approx(optimal)
    assert demonstrator_return("DarkRoom", TRAIN_GOALS, 1.0) < 0.1 * optimal
    # One return per episode, task by task: without noise, each task's optimum 4 times over.
    returns = demonstrator_returns("DarkRoom", TRAIN_GOALS, 0.0, episodes_per_task=4)
    np.testing.assert_allclose(returns, np.repeat(optimal_returns("DarkRoom", TRAIN_GOALS), 4))


def test_schedules_shapes():
    steps = 1000
    for schedule in (LinearSchedule(floor=0.2), ExponentialSchedule(floor=0.2), StepSchedule(floor=0.2, levels=4)):
        eps = schedule.values(steps)
        assert eps[0] == pytest.approx(1.0)
        assert np.all(np.diff(eps) <= 1e-12), "noise never rises"
        assert np.allclose(eps[900:], 0.2), "the floor is reached at 90% of the history"
        assert eps[899] > 0.2 or isinstance(schedule, StepSchedule)
    linear, exponential = LinearSchedule(floor=0.2).values(steps), ExponentialSchedule(floor=0.2).values(steps)
    assert linear[450] == pytest.approx(0.6)
    assert np.all(exponential[1:900] < linear[1:900]), "exponential decay falls faster early"
    assert len(np.unique(StepSchedule(floor=0.2, levels=4).values(steps))) == 4
    assert make_schedule("linear", floor=0.3) == LinearSchedule(floor=0.3)
    for schedule in (LinearSchedule(floor=0.2), StepSchedule(floor=0.2, levels=4)):
        assert schedule_of({"name": "noise_distillation", **schedule.describe()}) == schedule, "a data source's record"
    with pytest.raises(ValueError, match="describes no noise schedule"):
        schedule_of({"name": "q_learning"})


@pytest.mark.parametrize("kwargs, fragment", [
    ({"floor": 1.5}, "floor=1.5"), ({"floor_at": 0.0}, "floor_at=0.0"), ({"start": -0.1}, "start=-0.1")])
def test_bad_schedules_are_refused(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        LinearSchedule(**kwargs)


@pytest.mark.parametrize("family, tasks, max_perf", [
    ("DarkRoom", TRAIN_GOALS, 0.5), ("DarkRoom", TRAIN_GOALS, 0.3), ("DarkRoom", TRAIN_GOALS, 0.8),
    ("DarkKeyToDoor", key_to_door_tasks("train")[:200], 0.5)])
def test_calibrated_floor_reaches_max_perf_within_two_percent(family, tasks, max_perf):
    floor = calibrate_floor(family, tasks, max_perf)
    optimal = optimal_returns(family, tasks).mean()
    # Measured on fresh random draws, with more episodes than calibration used.
    measured = demonstrator_return(family, tasks, floor, episodes_per_task=256, seed=12345)
    assert abs(measured / optimal - max_perf) <= 0.02 * max_perf


def test_full_performance_means_no_noise():
    assert calibrate_floor("DarkRoom", TRAIN_GOALS, 1.0) == 0.0


@pytest.mark.parametrize("max_perf", [0.0, -0.5, 1.01, 0.01])
def test_unreachable_max_perf_is_refused(max_perf):
    with pytest.raises(ValueError, match=f"max_perf={max_perf}"):
        calibrate_floor("DarkRoom", TRAIN_GOALS, max_perf)


def test_noise_distillation_histories():
    histories = collect_noise_distillation("DarkRoom", TRAIN_GOALS, num_steps=2000, max_perf=0.5,
                                           histories_per_task=4, seed=0)
    assert (histories.num_histories, histories.num_steps) == (65 * 4, 2000)
    floor = histories.metadata["source"]["floor"]
    np.testing.assert_allclose(histories.epsilon[0], LinearSchedule(floor=floor).values(2000), rtol=1e-6)
    assert np.all(histories.epsilon == histories.epsilon[0])
    returns = histories.episode_returns()
    assert returns.shape == (260, 100) and np.all(histories.dones[:, 19::20])
    optimal = optimal_returns("DarkRoom", histories.tasks).mean()
    assert np.nanmean(returns[:, :5]) < 0.1 * optimal
    assert np.nanmean(returns[:, 90:]) == pytest.approx(0.5 * optimal, rel=0.05), "the floor's return is max_perf"
    # The random share of actions follows epsilon: no more optimal actions than 1 - eps * 4/5 predicts.
    agree = (histories.actions == histories.optimal_actions)
    assert agree[:, :100].mean() == pytest.approx(0.2, abs=0.05)
    assert agree[:, -100:].mean() == pytest.approx(1 - floor * 0.8, abs=0.03)


def test_noise_distillation_on_key_to_door_runs_step_by_step():
    tasks = key_to_door_tasks("train")[:100]
    histories = collect_noise_distillation("DarkKeyToDoor", tasks, num_steps=3000, max_perf=0.5, seed=1)
    returns = histories.episode_returns()
    assert np.nanmean(returns[:, :3]) < np.nanmean([row[~np.isnan(row)][-5:].mean() for row in returns])
    assert histories.summary()["epsilon_floor"] == pytest.approx(histories.metadata["source"]["floor"])


def test_same_seed_same_bytes(tmp_path):
    paths = []
    for i in range(2):
        histories = collect_noise_distillation("DarkRoom", TRAIN_GOALS[:6], num_steps=400, seed=7)
        paths.append(histories.save(tmp_path / f"h{i}.h5"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = collect_noise_distillation("DarkRoom", TRAIN_GOALS[:6], num_steps=400, seed=8)
    assert not np.array_equal(other.actions, histories.actions)


def test_collection_parameters_are_checked_before_work():
    with pytest.raises(ValueError, match="num_steps=0"):
        collect_noise_distillation("DarkRoom", TRAIN_GOALS, num_steps=0)
    with pytest.raises(ValueError, match="histories_per_task=-1"):
        collect_rl_histories("DarkRoom", TRAIN_GOALS, "q_learning", 100, histories_per_task=-1)
    with pytest.raises(ValueError, match="algorithm='sarsa'"):
        collect_rl_histories("DarkRoom", TRAIN_GOALS, "sarsa", 100)
    with pytest.raises(ValueError, match="family='GridWorld'"):
        make_batched("GridWorld", TRAIN_GOALS)


def collect_both_ways(monkeypatch, histories_per_task, **kwargs):
    """Dark Room AD^eps histories made twice from the same arguments: by the fast path (every episode of
    every history played side by side) and by the step-by-step path, which the collector takes when it
    is told that episodes may end early. Returns (fast, step_by_step)."""
    rows = {}

    def recording(fast_path):
        def make(*args, **env_kwargs):
            env = make_batched(*args, **env_kwargs)
            env.fixed_length_episodes &= fast_path
            rows.setdefault(fast_path, []).append(env.num_envs)
            return env
        return make

    made = []
    for fast_path in (True, False):
        with monkeypatch.context() as patch:
            patch.setattr(curricula, "make_batched", recording(fast_path))
            made.append(collect_noise_distillation("DarkRoom", TRAIN_GOALS, histories_per_task=histories_per_task,
                                                   seed=3, **kwargs))
    num_histories, episodes = made[0].num_histories, made[0].num_steps // 20
    assert max(rows[True]) == num_histories * episodes, "the fast path plays one row per episode"
    assert max(rows[False]) == num_histories, "the step-by-step path plays one row per history"
    return made


def test_fast_and_step_by_step_paths_agree_exactly_without_noise(monkeypatch):
    fast, step_by_step = collect_both_ways(monkeypatch, 2, num_steps=200, schedule=LinearSchedule(start=0.0),
                                           floor=0.0)
    for name in ("observations", "actions", "rewards", "dones", "epsilon", "optimal_actions", "tasks"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(step_by_step, name), err_msg=name)
        assert getattr(fast, name).dtype == getattr(step_by_step, name).dtype
    assert fast.metadata == step_by_step.metadata
    assert np.all(fast.actions == fast.optimal_actions)


def within_standard_errors(a, b, errors=5.0):
    """Whether two samples' means differ by less than `errors` standard errors of their difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    standard_error = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return abs(a.mean() - b.mean()) < errors * standard_error


def test_fast_and_step_by_step_paths_play_the_same_uniform_policy_at_full_noise(monkeypatch):
    fast, step_by_step = collect_both_ways(monkeypatch, 8, num_steps=400, schedule=LinearSchedule(), floor=1.0)
    for histories in (fast, step_by_step):
        shares = np.bincount(histories.actions.ravel(), minlength=5) / histories.actions.size
        np.testing.assert_allclose(shares, 0.2, atol=0.005)
    assert not np.array_equal(fast.actions, step_by_step.actions), "different random draws, same distribution"
    fast_returns, slow_returns = fast.episode_returns(), step_by_step.episode_returns()
    assert within_standard_errors(fast_returns, slow_returns)
    assert within_standard_errors(fast_returns > 0, slow_returns > 0)


def test_fast_and_step_by_step_paths_follow_the_schedule_step_by_step(monkeypatch):
    """Both paths apply epsilon per step, in the schedule's order: the share of optimal actions in each
    episode is 1 - 4/5 of that episode's mean epsilon, and the return of every episode has the same
    distribution along both paths. A reversed schedule, or one epsilon per history, fails this."""
    floor = 0.2
    fast, step_by_step = collect_both_ways(monkeypatch, 8, num_steps=400, schedule=LinearSchedule(), floor=floor)
    epsilon = LinearSchedule(floor=floor).values(400).reshape(20, 20).mean(axis=1)
    for histories in (fast, step_by_step):
        np.testing.assert_allclose(histories.epsilon[0].reshape(20, 20).mean(axis=1), epsilon, rtol=1e-6)
        agree = (histories.actions == histories.optimal_actions).reshape(-1, 20, 20).mean(axis=(0, 2))
        # 520 histories x 20 steps an episode: a standard error below 0.005 for each share.
        np.testing.assert_allclose(agree, 1 - 0.8 * epsilon, atol=0.025)
    fast_returns, slow_returns = fast.episode_returns(), step_by_step.episode_returns()
    assert fast_returns[:, -1].mean() > 5 * fast_returns[:, 0].mean(), "the histories improve"
    for episode in range(20):
        assert within_standard_errors(fast_returns[:, episode], slow_returns[:, episode]), f"episode {episode}"


def test_q_learning_recipe_collection_improves_and_records_its_exploration():
    spec = RECIPES["dark_room_q_learning"].collect
    small = replace(spec, histories_per_task=2)
    histories = small.collect(seed=0)
    returns = histories.episode_returns()
    assert returns.shape == (histories.num_histories, spec.num_steps // 20)
    first, middle, last = returns[:, 0].mean(), returns[:, 10:20].mean(), returns[:, -10:].mean()
    assert first < middle < last and last > 0.4 * optimal_returns("DarkRoom", histories.tasks).mean()
    source = histories.metadata["source"]
    assert source["name"] == "q_learning" and source["learning_rate"] == spec.options["learning_rate"]
    assert source["exploration"] == make_schedule(**spec.options["exploration"]).describe()
    assert set(source["exploration"]) == {"schedule", "start", "floor", "floor_at"}
    assert json.loads(json.dumps(histories.metadata)) == histories.metadata
    # The schedule is what the learner explores with: with epsilon held at 1 nothing is learnt.
    held = replace(small, options={**small.options, "exploration": {"schedule": "linear", "floor": 1.0}})
    assert held.collect(seed=0).episode_returns()[:, -10:].mean() < 0.1 * last
