"""History storage: round trips, atomic writes, clear errors, and the context windows AD trains on."""
from dataclasses import replace

import h5py
import numpy as np
import pytest

from icrl_lab.curricula import collect_noise_distillation
from icrl_lab.envs import bandit_tasks, dark_room_goals
from icrl_lab.histories import (ContextWindows, HistoryFileError, join_histories, load_histories,
                                previous_actions_and_rewards)
from icrl_lab.sources import collect_rl_histories


@pytest.fixture(scope="module")
def histories():
    return collect_noise_distillation("DarkRoom", dark_room_goals("train")[:8], num_steps=200, seed=0)


def test_round_trip_keeps_every_array_and_the_metadata(histories, tmp_path):
    loaded = load_histories(histories.save(tmp_path / "sub" / "data.h5"))
    for name in ("observations", "actions", "rewards", "dones", "epsilon", "optimal_actions", "tasks"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(histories, name))
        assert getattr(loaded, name).dtype == getattr(histories, name).dtype
    assert loaded.metadata == histories.metadata
    for key in ("env_family", "env_kwargs", "source", "seed", "icrl_lab_version", "command"):
        assert key in loaded.metadata


def test_round_trip_without_optional_arrays(tmp_path):
    data = collect_rl_histories("BernoulliBandit", bandit_tasks(3), "thompson", num_steps=50, seed=0,
                                env_kwargs={"horizon": 50})
    data.optimal_actions = None
    loaded = load_histories(data.save(tmp_path / "bandit.h5"))
    assert loaded.epsilon is None and loaded.optimal_actions is None
    np.testing.assert_array_equal(loaded.rewards, data.rewards)


def test_soft_labels_round_trip_and_a_step_that_is_no_distribution_is_refused(histories, tmp_path):
    soft = np.full((*histories.actions.shape, 5), 0.2, dtype=np.float32)
    soft[0, 0] = [0.5, 0.5, 0, 0, 0]
    labelled = replace(histories, action_probabilities=soft)
    loaded = load_histories(labelled.save(tmp_path / "soft.h5"))
    np.testing.assert_array_equal(loaded.action_probabilities, soft)
    assert loaded.sha256() == labelled.sha256() != histories.sha256()
    windows = ContextWindows(loaded, 50, 5, action_probabilities=True)
    np.testing.assert_array_equal(windows[0]["action_probabilities"].numpy(), soft[0, :50])
    with pytest.raises(ValueError, match=r"action_probabilities has shape \(8, 200\) but observations have \(8, 200\)"):
        replace(histories, action_probabilities=soft[..., 0])
    for wrong, message in ((soft[..., :4] / 0.8, "has 4 actions per step but the DarkRoom environment"),
                           (soft * 0.9, "do not sum to 1")):
        with pytest.raises(ValueError, match=message):
            replace(histories, action_probabilities=wrong.astype(np.float32)).check_env()


def test_join_keeps_every_part_in_order_and_refuses_parts_that_do_not_fit(histories):
    def rows(selection):
        return replace(histories, **{name: getattr(histories, name)[selection] for name in
                                     ("observations", "actions", "rewards", "dones", "tasks", "epsilon", "optimal_actions")})
    first, rest = rows(slice(0, 3)), rows(slice(3, None))
    rest = replace(rest, actions=rest.actions.astype(np.int64))  # joined in the first part's dtype
    joined = join_histories([first, rest], {"joined": True})
    assert joined.sha256() == histories.sha256() and joined.metadata == {"joined": True}
    assert join_histories([first, rest]).metadata == histories.metadata
    with pytest.raises(ValueError, match=r"epsilon is held by parts \[1\] of 0-1 only"):
        join_histories([replace(first, epsilon=None), rest])
    short = replace(first, **{name: getattr(first, name)[:, :100] for name in
                              ("observations", "actions", "rewards", "dones", "epsilon", "optimal_actions")})
    with pytest.raises(ValueError, match=r"the parts have \[100, 200\] steps per history"):
        join_histories([short, rest])
    with pytest.raises(ValueError, match="parts is empty"):
        join_histories([])


def test_interrupted_write_leaves_the_old_file_and_no_partial_one(histories, tmp_path, monkeypatch):
    path = histories.save(tmp_path / "data.h5")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt("interrupted")

    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(KeyboardInterrupt):
        histories.save(path)
    with pytest.raises(KeyboardInterrupt):
        histories.save(tmp_path / "new.h5")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]


def test_missing_truncated_and_foreign_files_name_the_file(histories, tmp_path):
    with pytest.raises(HistoryFileError, match="nothing.h5: no such history file"):
        load_histories(tmp_path / "nothing.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(histories.save(tmp_path / "good.h5").read_bytes()[:5000])
    with pytest.raises(HistoryFileError, match="truncated.h5 is truncated or corrupt"):
        load_histories(truncated)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(HistoryFileError, match="notes.h5"):
        load_histories(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(HistoryFileError, match="foreign.h5 is an HDF5 file but not an icrl_lab history file"):
        load_histories(foreign)


def test_episode_returns_and_summary(histories):
    returns = histories.episode_returns()
    assert returns.shape == (8, 10)
    np.testing.assert_allclose(returns.sum(axis=1), histories.rewards.sum(axis=1))
    summary = histories.summary()
    assert summary["histories"] == 8 and summary["total_steps"] == 1600
    assert summary["mean_return_first_episode"] == pytest.approx(returns[:, 0].mean())


def test_previous_actions_mark_episode_starts(histories):
    prev_actions, prev_rewards = previous_actions_and_rewards(histories, num_actions=5)
    assert np.all(prev_actions[:, ::20] == 5) and np.all(prev_rewards[:, 0] == 0)
    np.testing.assert_array_equal(prev_actions[:, 1:20], histories.actions[:, :19])
    np.testing.assert_array_equal(prev_rewards[:, 21:40], histories.rewards[:, 20:39])


def test_final_step_reward_enters_the_next_episode_first_token(histories):
    """As in the AD^eps code: the reward of an episode's last step is not lost at the boundary."""
    _, prev_rewards = previous_actions_and_rewards(histories, num_actions=5)
    np.testing.assert_array_equal(prev_rewards[:, 20::20], histories.rewards[:, 19:-1:20])
    assert histories.rewards[:, 19:-1:20].any(), "the fixture should have episodes rewarded on their last step"


def test_context_windows_cross_episode_boundaries(histories):
    windows = ContextWindows(histories, context_steps=50, num_actions=5)
    assert len(windows) == 8 * (200 - 50 + 1)
    item = windows[151 + 7]  # history 1, starting at step 7
    np.testing.assert_array_equal(item["observations"], histories.observations[1, 7:57])
    np.testing.assert_array_equal(item["actions"], histories.actions[1, 7:57])
    assert item["prev_actions"][13] == 5, "step 20 starts an episode inside the window"
    assert item["prev_actions"][0] == histories.actions[1, 6]
    batch = windows.sample(16, generator=__import__("torch").Generator().manual_seed(0))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (16, 50) for k in item}
    assert batch["observations"].dtype == __import__("torch").int64


def test_context_longer_than_the_history_is_refused(histories):
    with pytest.raises(ValueError, match="context_steps=500"):
        ContextWindows(histories, context_steps=500, num_actions=5)
