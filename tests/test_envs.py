"""The environments against the AD^eps paper's definitions, and the batched forms against the single ones."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import icrl_lab  # noqa: F401  (registers the environments)
from icrl_lab.envs import (BatchedBernoulliBandit, BatchedDarkKeyToDoor, BatchedDarkRoom, BernoulliBanditEnv, DarkRoomEnv,
                           VARIANTS, bandit_tasks, dark_room_goals, key_to_door_tasks, task_split)
from icrl_lab.sources import optimal_returns

NOOP, UP, RIGHT, DOWN, LEFT = range(5)


@pytest.mark.parametrize("env_id", [f"icrl_lab/{name}" for name in VARIANTS])
def test_registered_environments_pass_gymnasium_check(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=3)
    env.close()


def test_make_with_task_arguments():
    assert gym.make("icrl_lab/DarkRoom-v0", goal=(2, 7)).reset(seed=0)[1]["goal"] == (2, 7)
    info = gym.make("icrl_lab/DarkKeyToDoor-v0", key=(0, 0), door=(8, 8)).reset(seed=0)[1]
    assert (info["key"], info["door"]) == ((0, 0), (8, 8))
    assert list(gym.make("icrl_lab/BernoulliBandit-v0", means=[0.2, 0.8]).reset(seed=0)[1]["means"]) == [0.2, 0.8]


def test_dark_room_rules():
    env = gym.make("icrl_lab/DarkRoom-v0", goal=(3, 4)).unwrapped
    obs, _ = env.reset(seed=0)
    assert obs == 4 * 9 + 4, "every episode starts at the centre"
    obs, reward, terminated, truncated, _ = env.step(UP)
    assert (obs, reward, terminated, truncated) == (3 * 9 + 4, 1.0, False, False)
    obs, reward, *_ = env.step(NOOP)
    assert reward == 1.0, "reward on every step spent on the goal"
    obs, reward, *_ = env.step(RIGHT)
    assert (obs, reward) == (3 * 9 + 5, 0.0)
    for _ in range(16):
        _, _, terminated, truncated, _ = env.step(NOOP)
        assert not terminated and not truncated
    _, _, terminated, truncated, _ = env.step(NOOP)
    assert truncated and not terminated, "episodes are cut after exactly 20 steps, never terminated"


def test_dark_room_walls_clip_moves():
    env = gym.make("icrl_lab/DarkRoom-v0", goal=(0, 0), start=(0, 8)).unwrapped
    assert env.reset(seed=0)[0] == 8
    assert env.step(UP)[0] == 8 and env.step(RIGHT)[0] == 8
    assert env.step(DOWN)[0] == 17 and env.step(LEFT)[0] == 16


def test_dark_room_optimal_return_is_21_minus_manhattan_for_every_goal():
    goals = dark_room_goals("all")
    distance = np.abs(goals - 4).sum(axis=1)
    expected = np.where(distance == 0, 20, 21 - distance)
    np.testing.assert_array_equal(optimal_returns("DarkRoom", goals), expected)


def test_dark_room_variants():
    small = gym.make("icrl_lab/DarkRoomSmall-v0", goal=(0, 0)).unwrapped
    assert (small.size, small.horizon, small.reset(seed=0)[0]) == (3, 5, 4)
    hard = gym.make("icrl_lab/DarkRoomHard-v0", goal=(7, 8)).unwrapped
    assert (hard.size, hard.horizon) == (17, 20)
    hard.reset(seed=0)
    _, reward, terminated, _, _ = hard.step(UP)
    assert reward == 1.0 and terminated, "the Hard variant ends on reaching the goal"
    goals = dark_room_goals("all", size=17)
    assert set(optimal_returns("DarkRoom", goals, size=17, horizon=20, terminate_on_goal=True)) == {1.0}


def test_key_to_door_rules():
    env = gym.make("icrl_lab/DarkKeyToDoor-v0", key=(0, 1), door=(0, 3)).unwrapped
    env.reset(seed=0)
    env.row, env.col = 0, 2  # place the agent between key and door
    assert env.step(RIGHT)[1:3] == (0.0, False), "the door without the key gives nothing"
    assert env.step(LEFT)[1] == 0.0
    assert env.step(LEFT)[1:3] == (1.0, False), "+1 on first reaching the key"
    env.step(RIGHT)
    assert env.step(LEFT)[1] == 0.0, "the key pays only once"
    env.step(RIGHT)
    obs, reward, terminated, truncated, info = env.step(RIGHT)
    assert (obs, reward, terminated, truncated) == (3, 1.0, True, False) and info["has_key"]


def test_key_to_door_start_is_random_and_never_the_key():
    env = gym.make("icrl_lab/DarkKeyToDoor-v0", key=(4, 4), door=(0, 0)).unwrapped
    starts = {env.reset(seed=s)[0] for s in range(300)}
    assert 40 not in starts and len(starts) > 60


def test_key_to_door_truncates_at_40_and_optimal_return_is_2():
    env = gym.make("icrl_lab/DarkKeyToDoor-v0", key=(0, 0), door=(8, 8)).unwrapped
    env.reset(seed=1)
    ends = []
    for _ in range(45):
        _, _, terminated, truncated, _ = env.step(NOOP)
        ends.append((terminated, truncated))
        if terminated or truncated:
            break
    assert ends == [(False, False)] * 39 + [(False, True)], "truncated on exactly the 40th step, never before"
    tasks = key_to_door_tasks("test")
    assert np.all(optimal_returns("DarkKeyToDoor", tasks, seed=5) == 2.0)


def test_bandit_rewards_follow_the_arm_means():
    env = gym.make("icrl_lab/BernoulliBandit-v0", means=[0.1, 0.7], horizon=4000).unwrapped
    env.reset(seed=0)
    rewards = [env.step(1)[1] for _ in range(3999)]
    assert abs(np.mean(rewards) - 0.7) < 0.03
    assert env.step(0)[3], "truncated at the horizon"


def test_task_splits_follow_the_paper():
    train, test = dark_room_goals("train"), dark_room_goals("test")
    assert (len(train), len(test)) == (65, 16)
    cells = {tuple(g) for g in np.concatenate([train, test])}
    assert len(cells) == 81
    order = np.random.default_rng(42).permutation(81)
    np.testing.assert_array_equal(test[:, 0] * 9 + test[:, 1], order[65:])
    k_train, k_test = key_to_door_tasks("train"), key_to_door_tasks("test")
    assert (len(k_train), len(k_test)) == (1000, 50)
    assert not np.any(np.all(k_train[:, :2] == k_train[:, 2:], axis=1))
    assert not {tuple(t) for t in k_train} & {tuple(t) for t in k_test}
    means = bandit_tasks(20, k=5, seed=0)
    assert means.shape == (20, 5) and means.min() >= 0 and means.max() <= 1


@pytest.mark.parametrize("family, validation_size", [("DarkRoom", 8), ("DarkKeyToDoor", 50)])
def test_fit_and_validation_divide_the_training_split(family, validation_size):
    train, test = task_split(family, "train"), task_split(family, "test")
    fit, validation = task_split(family, "fit"), task_split(family, "validation")
    assert len(validation) == validation_size and len(fit) + len(validation) == len(train)
    as_set = lambda tasks: {tuple(t) for t in tasks}  # noqa: E731
    assert as_set(fit) | as_set(validation) == as_set(train)
    assert not as_set(fit) & as_set(validation) and not as_set(validation) & as_set(test)
    np.testing.assert_array_equal(task_split(family, "validation"), validation)  # the same every time
    with pytest.raises(ValueError, match="'valid' is not one of .*'validation'"):
        task_split(family, "valid")


actions_strategy = st.lists(st.integers(0, 4), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(goals=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=4),
       actions=actions_strategy, terminate=st.booleans())
def test_batched_dark_room_equals_single(goals, actions, terminate):
    batched = BatchedDarkRoom(goals, terminate_on_goal=terminate)
    singles = [gym.make("icrl_lab/DarkRoom-v0", goal=g, terminate_on_goal=terminate).unwrapped for g in goals]
    obs = batched.reset_rows(seed=0)
    assert list(obs) == [env.reset(seed=0)[0] for env in singles]
    for a in actions:
        obs, rewards, terminated, truncated = batched.step_arrays(np.full(len(goals), a))
        for i, env in enumerate(singles):
            assert (obs[i], rewards[i], terminated[i], truncated[i]) == env.step(a)[:4]
        done = terminated | truncated
        if done.any():
            obs = batched.reset_rows(done)
            for i in np.flatnonzero(done):
                assert obs[i] == singles[i].reset()[0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), cells=st.lists(st.integers(0, 80), min_size=2, max_size=2, unique=True),
       actions=actions_strategy)
def test_batched_key_to_door_equals_single(seed, cells, actions):
    key, door = divmod(cells[0], 9), divmod(cells[1], 9)
    batched = BatchedDarkKeyToDoor([key + door])
    single = gym.make("icrl_lab/DarkKeyToDoor-v0", key=key, door=door).unwrapped
    assert batched.reset_rows(seed=seed)[0] == single.reset(seed=seed)[0]
    for a in actions:
        obs, rewards, terminated, truncated = batched.step_arrays([a])
        assert (obs[0], rewards[0], terminated[0], truncated[0]) == single.step(a)[:4]
        if terminated[0] or truncated[0]:
            assert batched.reset_rows(terminated | truncated)[0] == single.reset()[0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), means=st.lists(st.floats(0, 1), min_size=2, max_size=6),
       data=st.data())
def test_batched_bandit_equals_single(seed, means, data):
    actions = data.draw(st.lists(st.integers(0, len(means) - 1), min_size=1, max_size=50))
    batched = BatchedBernoulliBandit([means], horizon=20)
    single = gym.make("icrl_lab/BernoulliBandit-v0", means=means, horizon=20).unwrapped
    batched.reset_rows(seed=seed)
    single.reset(seed=seed)
    for a in actions:
        obs, rewards, terminated, truncated = batched.step_arrays([a])
        assert (obs[0], rewards[0], terminated[0], truncated[0]) == single.step(a)[:4]
        if truncated[0]:
            batched.reset_rows(truncated)
            single.reset()


@pytest.mark.parametrize("make, fragment", [
    (lambda: gym.make("icrl_lab/DarkRoom-v0", size=1), "size=1"),
    (lambda: gym.make("icrl_lab/DarkRoom-v0", goal=(9, 0)), "goal=(9, 0)"),
    (lambda: gym.make("icrl_lab/DarkRoom-v0", horizon=-3), "horizon=-3"),
    (lambda: gym.make("icrl_lab/DarkKeyToDoor-v0", key=(1, 1), door=(1, 1)), "different cells"),
    (lambda: gym.make("icrl_lab/BernoulliBandit-v0", means=[0.5]), "k >= 2"),
    (lambda: gym.make("icrl_lab/BernoulliBandit-v0", k=1), "k=1"),
    (lambda: gym.make("icrl_lab/BernoulliBandit-v0", means=[0.5, 1.5]), "probabilities"),
    (lambda: BatchedDarkRoom([(0, 12)]), "outside the 9x9 grid"),
    (lambda: dark_room_goals("validation"), "split='validation'"),
    (lambda: bandit_tasks(0), "n=0"),
])
def test_bad_parameters_are_named_in_the_error(make, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        make()


def test_rgb_render_shows_the_grid():
    env = gym.make("icrl_lab/DarkRoom-v0", goal=(0, 0), render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (9 * 24, 9 * 24, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) >= 4  # floor, walls, goal, agent


def test_path_drawing(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from icrl_lab.plots import draw_grid_path
    ax = draw_grid_path(9, [40, 31, 22, 23], goal=(2, 5))
    ax.figure.savefig(tmp_path / "path.png")
    assert (tmp_path / "path.png").stat().st_size > 1000


# --- the batched forms as gymnasium VectorEnvs ---------------------------------------------------------
# gymnasium 1.x offers no checker for vector environments (utils.env_checker checks single ones), so
# the VectorEnv contract is checked here: spaces, shapes and dtypes, seeding, reset_mask, autoreset.

VECTOR_CASES = [
    ("icrl_lab/DarkRoom-v0", BatchedDarkRoom, {"goals": dark_room_goals("test")[:5]}),
    ("icrl_lab/DarkRoomHard-v0", BatchedDarkRoom, {}),
    ("icrl_lab/DarkKeyToDoor-v0", BatchedDarkKeyToDoor, {"tasks": key_to_door_tasks("test")[:5]}),
    ("icrl_lab/BernoulliBandit-v0", BatchedBernoulliBandit, {"means": bandit_tasks(5, seed=3), "horizon": 7}),
]


def play(env, seed, steps=60):
    """Random actions from a seeded action space: every step's arrays and infos."""
    env.action_space.seed(seed)
    record = [env.reset(seed=seed)]
    for _ in range(steps):
        record.append(env.step(env.action_space.sample()))
    return record


@pytest.mark.parametrize("env_id, vector_class, task_kwargs", VECTOR_CASES)
def test_make_vec_returns_the_batched_env_and_it_keeps_the_vector_contract(env_id, vector_class, task_kwargs):
    n = 5
    for mode in (None, "vector_entry_point"):
        env = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode, **task_kwargs)
        assert type(env) is vector_class and isinstance(env, gym.vector.VectorEnv) and env.num_envs == n
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert env.observation_space == gym.vector.utils.batch_space(env.single_observation_space, n)
    assert env.action_space == gym.vector.utils.batch_space(env.single_action_space, n)
    assert (env.single_observation_space.n, env.single_action_space.n) == (env.num_obs, env.num_actions)
    obs, infos = env.reset(seed=0)
    assert obs in env.observation_space and obs.dtype == np.int64 and isinstance(infos, dict)
    for _ in range(50):
        obs, rewards, terminated, truncated, infos = env.step(env.action_space.sample())
        assert obs in env.observation_space and isinstance(infos, dict)
        assert rewards.shape == terminated.shape == truncated.shape == (n,)
        assert rewards.dtype.kind == "f" and terminated.dtype == truncated.dtype == np.bool_
        assert not np.any(terminated & truncated)
    # The same seed gives the same tasks and the same steps; another seed other ones.
    first, again = play(gym.make_vec(env_id, num_envs=n, **task_kwargs), 3), play(env, 3)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_equal(x, y)
    assert env.render() is None
    env.close()


@pytest.mark.parametrize("env_id, vector_class, task_kwargs", VECTOR_CASES[1:])
def test_tasks_left_out_are_drawn_at_every_seeded_reset(env_id, vector_class, task_kwargs):
    env = gym.make_vec(env_id, num_envs=40)
    env.reset(seed=1)
    tasks = env.tasks.copy()
    assert len({tuple(t) for t in tasks}) > 20, "each environment draws its own task"
    env.reset(options={"reset_mask": np.ones(40, dtype=bool)})
    env.reset()
    np.testing.assert_array_equal(env.tasks, tasks, "kept until the next seeded reset")
    env.reset(seed=2)
    assert not np.array_equal(env.tasks, tasks)
    env.reset(seed=1)
    np.testing.assert_array_equal(env.tasks, tasks)
    env.optimal_returns()  # the drawn tasks are the env's tasks
    if vector_class is BatchedDarkKeyToDoor:
        assert not np.any(np.all(env.tasks[:, :2] == env.tasks[:, 2:], axis=1))


def test_reset_mask_resets_only_the_masked_environments():
    env = gym.make_vec("icrl_lab/DarkKeyToDoor-v0", num_envs=6, tasks=key_to_door_tasks("test")[:6])
    env.reset(seed=0)
    moved = env.step(np.full(6, UP))[0]
    mask = np.array([True, False, True, False, False, False])
    obs, infos = env.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs[~mask], moved[~mask])
    assert isinstance(infos, dict) and np.all(env.steps[mask] == 0) and np.all(env.steps[~mask] == 1)
    for bad in (np.zeros(6, dtype=bool), np.ones(5, dtype=bool), np.ones(6, dtype=int), [True] * 6):
        with pytest.raises(ValueError, match="reset_mask"):
            env.reset(options={"reset_mask": bad})


def test_autoreset_modes_match_gymnasiums_sync_vector_env():
    """Dark Room is deterministic, so the batched form must agree step for step with gymnasium's own
    SyncVectorEnv over single environments, in each autoreset mode."""
    goals = [(4, 3), (0, 0), (8, 8)]
    rng = np.random.default_rng(0)
    actions = rng.integers(5, size=(70, len(goals)))
    for mode in gym.vector.AutoresetMode:
        batched = BatchedDarkRoom(goals, horizon=6, terminate_on_goal=True, autoreset_mode=mode)
        sync = gym.vector.SyncVectorEnv([lambda g=g: DarkRoomEnv(goal=g, horizon=6, terminate_on_goal=True) for g in goals],
                                        autoreset_mode=mode)
        assert batched.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode
        np.testing.assert_array_equal(batched.reset(seed=0)[0], sync.reset(seed=0)[0])
        for step_actions in actions:
            mine, theirs = batched.step(step_actions), sync.step(step_actions)
            for x, y in zip(mine[:4], theirs[:4]):
                np.testing.assert_array_equal(x, y)
            if "final_obs" in theirs[4]:
                np.testing.assert_array_equal(mine[4]["_final_obs"], theirs[4]["_final_obs"])
                done = theirs[4]["_final_obs"]
                assert list(mine[4]["final_obs"][done]) == list(theirs[4]["final_obs"][done])
            else:
                assert "final_obs" not in mine[4]
            done = mine[2] | mine[3]
            if mode == gym.vector.AutoresetMode.DISABLED and done.any():
                with pytest.raises(ValueError, match="reset them"):
                    batched.step(step_actions)
                np.testing.assert_array_equal(batched.reset(options={"reset_mask": done})[0],
                                              sync.reset(options={"reset_mask": done})[0])


def test_vector_step_refuses_bad_actions_and_tasks_must_match_num_envs():
    env = gym.make_vec("icrl_lab/DarkRoom-v0", num_envs=2, goals=[(0, 0), (1, 1)])
    env.reset(seed=0)
    for bad in ([0, 5], [0], [0.5, 1.0], [-1, 0]):
        with pytest.raises(ValueError, match="actions must be 2 integers"):
            env.step(np.asarray(bad))
    with pytest.raises(ValueError, match="pass num_envs=65"):
        gym.make_vec("icrl_lab/DarkRoom-v0", goals=dark_room_goals("train"))
    with pytest.raises(ValueError, match="num_envs"):
        BatchedDarkRoom()


def test_family_knowledge_is_a_method_of_the_environment():
    room = BatchedDarkRoom([(4, 4), (0, 0), (2, 7)])
    np.testing.assert_array_equal(room.optimal_returns(), [20, 13, 16])
    assert room.task_marks(room.tasks[2]) == {"goal": (2, 7)}
    doors = BatchedDarkKeyToDoor([(0, 1, 8, 8)])
    assert doors.task_marks(doors.tasks[0]) == {"key": (0, 1), "door": (8, 8)}
    assert list(doors.optimal_returns(seed=4)) == [2.0]
    bandit = BatchedBernoulliBandit([[0.2, 0.9], [0.5, 0.1]], horizon=10)
    np.testing.assert_allclose(bandit.optimal_returns(), [9.0, 5.0])
    assert bandit.task_marks(bandit.tasks[0]) == {} and bandit.metric == "regret" and room.metric == "return"
    np.testing.assert_allclose(bandit.regret([[0, 1], [0, 1]]), [[0.7, 0.7], [0.0, 0.4]])


def test_batched_grids_render_one_picture_per_environment():
    env = gym.make_vec("icrl_lab/DarkKeyToDoor-v0", num_envs=2, tasks=[(0, 1, 8, 8), (3, 3, 4, 4)],
                       render_mode="rgb_array")
    env.reset(seed=0)
    frames = env.render()
    assert len(frames) == 2 and all(f.shape == (9 * 24, 9 * 24, 3) and f.dtype == np.uint8 for f in frames)
    with pytest.raises(ValueError, match="render_mode='human'"):
        BatchedBernoulliBandit([[0.1, 0.2]], render_mode="human")


def test_bandit_renders_its_pulls_as_bars():
    env = gym.make("icrl_lab/BernoulliBandit-v0", means=[0.1, 0.9, 0.5], render_mode="rgb_array")
    env.reset(seed=0)
    for arm in (1, 1, 1, 0):
        env.step(arm)
    image = env.render()
    assert image.shape == (120, 3 * 32, 3) and image.dtype == np.uint8
    column = image[:, 16 + 32]  # the middle of arm 1's bar: three quarters of the pulls
    assert (column == (33, 102, 172)).all(axis=1).sum() == pytest.approx(0.75 * 120, abs=3)
    with pytest.raises(ValueError, match="render_mode='ansi'"):
        BernoulliBanditEnv(render_mode="ansi")
