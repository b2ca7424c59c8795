"""The widgets' plain parts (icrl_lab.play, the figures in icrl_lab.plots), and the widgets themselves driven
from Python as a browser would drive them, checking what the picture shows after each interaction."""
import base64

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

from icrl_lab import plots, probe, widgets
from icrl_lab.envs import dark_room_goals
from icrl_lab.histories import Histories, previous_actions_and_rewards
from icrl_lab.play import DarkRoomGame, curriculum_preview, episode_cells, play_episode

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def buttons(widget):
    """Every button inside a widget tree, by its description."""
    found, stack = {}, [widget]
    while stack:
        node = stack.pop()
        if isinstance(node, (ipywidgets.Button, ipywidgets.ToggleButton)):
            found[node.description] = node
        stack.extend(getattr(node, "children", ()))
    return found


def find(widget, kind):
    stack, found = [widget], []
    while stack:
        node = stack.pop()
        if isinstance(node, kind):
            found.append(node)
        stack.extend(getattr(node, "children", ()))
    return found


def shown(widget) -> bytes:
    """The one picture a widget's Output shows (a person sees exactly one figure), as PNG bytes."""
    (picture,) = find(widget, ipywidgets.Output)
    assert len(picture.outputs) == 1, f"the picture holds {len(picture.outputs)} outputs: figures pile up"
    (output,) = picture.outputs
    assert output["output_type"] == "display_data"
    image = base64.b64decode(output["data"]["image/png"])
    assert image.startswith(PNG_SIGNATURE)
    return image


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_game_shows_only_steps_and_rewards_until_revealed():
    game = DarkRoomGame(goal=(3, 4))  # one step up from the centre
    assert game.status().startswith("episode 1 · step 0 of 20")
    assert "(3, 4)" not in game.status()
    assert game.act("up") == 1.0 and game.act("noop") == 1.0 and game.act(3) == 0.0
    assert "step 3 of 20" in game.status() and "return 2" in game.status()
    hidden, revealed = plots.dark_room_game_figure(game), plots.dark_room_game_figure(game, reveal=True)
    assert len(hidden.axes[0].patches) == 0, "the goal must stay hidden"
    assert len(revealed.axes[0].patches) == 1


def test_episodes_end_after_the_horizon_and_the_room_keeps_its_goal():
    game = DarkRoomGame(goal=(4, 8))  # on the east wall: reached on step 4, then pushed against
    for _ in range(20):
        game.act("right")
    assert game.done and game.episode_returns == [17.0]
    with pytest.raises(ValueError, match="episode is over"):
        game.act("up")
    game.new_episode()
    assert not game.done and game.goal == (4, 8) and "earlier returns: 17" in game.status()
    game.new_room()
    assert game.episode_returns == [] and game.cells == [40]


def test_the_game_marks_rewarded_steps_and_says_when_an_episode_is_discarded():
    game = DarkRoomGame(goal=(3, 4))
    game.act("up"), game.act("noop"), game.act("down")
    assert game.rewarded_cells == [31, 31]
    figure = plots.dark_room_game_figure(game)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert labels == ["start", "end", "rewarded"] and "goal" not in labels
    game.new_episode()
    assert "episode 1 was left after 3 of 20 steps (return 2) and is not counted" in game.status()
    assert game.episode_returns == [] and game.rewarded_cells == []
    game.act("up")
    assert "not counted" not in game.status()
    for _ in range(19):
        game.act("noop")
    game.new_episode()
    assert "not counted" not in game.status() and "earlier returns: 20" in game.status()


def test_grid_figures_name_their_marks_in_a_legend():
    ax = plots.draw_grid_path(9, [40, 41, 42], key=(0, 3), door=(8, 1))
    assert ax.get_legend() is not None
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["key", "door", "start", "end"]


def test_summary_tables_print_integers_as_integers():
    text = plots.table({"histories": 65, "episodes": 200.0, "mean_return": 0.29166}).to_string()
    assert text.split() == ["histories", "65", "episodes", "200", "mean_return", "0.292"]


def test_the_game_refuses_unknown_actions():
    with pytest.raises(ValueError, match="not one of"):
        DarkRoomGame(seed=1).act("jump")


def test_player_buttons_move_the_agent_and_change_the_status_and_the_picture():
    player = widgets.dark_room_player(goal=(3, 4))
    status = find(player, ipywidgets.HTML)[0]
    before, start = status.value, shown(player)
    buttons(player)["up"].click()
    assert status.value != before and "step 1 of 20" in status.value and "last reward 1" in status.value
    moved = shown(player)
    assert moved != start, "the path drawn must follow the agent"
    buttons(player)["reveal the goal"].value = True
    revealed = shown(player)
    assert revealed != moved
    buttons(player)["reveal the goal"].value = False
    assert shown(player) == moved, "hiding the goal again shows the same path in the dark"
    buttons(player)["left"].click()
    buttons(player)["new episode"].click()
    assert "step 0 of 20" in status.value and shown(player) == start
    buttons(player)["new room"].click()
    assert "step 0 of 20" in status.value and shown(player) == start, "a new room starts from the same centre"


def test_optimal_play_earns_the_optimal_return_and_random_play_less():
    cells, rewards = play_episode("DarkRoom", (2, 7), epsilon=0.0)
    assert cells[0] == 40 and cells[-1] == 2 * 9 + 7 and len(rewards) == 20
    assert sum(rewards) == 21 - (2 + 3)
    _, random_rewards = play_episode("DarkRoom", (2, 7), epsilon=1.0, seed=1)
    assert sum(random_rewards) < sum(rewards)
    key_cells, key_rewards = play_episode("DarkKeyToDoor", (0, 3, 8, 1), epsilon=0.0)
    assert sum(key_rewards) == 2 and key_cells[-1] == 8 * 9 + 1


def test_episode_cells_follow_the_history_to_where_the_last_action_led():
    # Two episodes of 3 steps in a 9x9 room: right, right, down; then up, noop, left.
    observations = np.array([[40, 41, 42, 40, 31, 31]])
    actions = np.array([[2, 2, 3, 1, 0, 4]])
    history = Histories(observations, actions, np.zeros((1, 6), np.float32), np.array([[0, 0, 1, 0, 0, 1]], bool),
                        np.array([[0, 0]]), metadata={"env_family": "DarkRoom", "env_kwargs": {}})
    assert episode_cells(history, 0, 0) == ([40, 41, 42, 51], [0.0, 0.0, 0.0])
    assert episode_cells(history, 0, 1)[0] == [40, 31, 31, 30]
    with pytest.raises(ValueError, match="2 complete episodes"):
        episode_cells(history, 0, 2)


@pytest.fixture(scope="module")
def evaluation(untrained_rollout):
    return untrained_rollout


def test_rollout_viewer_steps_through_episodes(evaluation):
    _, frame, played = evaluation
    figure = plots.rollout_figure(played, frame, index=1, episode=2)
    assert figure.axes[0].get_title().startswith("task 1, episode 2: return")
    viewer = widgets.rollout_viewer(played, frame)
    episode = find(viewer, ipywidgets.IntSlider)[0]
    pictures = [shown(viewer)]
    buttons(viewer)["next episode"].click()
    buttons(viewer)["next episode"].click()
    assert episode.value == 2
    pictures.append(shown(viewer))
    buttons(viewer)["previous episode"].click()
    assert episode.value == 1
    for _ in range(10):
        buttons(viewer)["next episode"].click()
    assert episode.value == episode.max == 3
    pictures.append(shown(viewer))
    find(viewer, ipywidgets.Dropdown)[0].value = 2
    pictures.append(shown(viewer))
    assert len(set(pictures)) == len(pictures), "each episode and task drawn is a new picture"


def test_curriculum_preview_follows_the_schedule_and_max_perf():
    goals = dark_room_goals("train")[:8]
    low = curriculum_preview("linear", 0.3, tasks=goals, num_steps=400)
    high = curriculum_preview("step", 0.9, tasks=goals, num_steps=400)
    assert low.metadata["source"]["schedule"] == "LinearSchedule" and high.metadata["source"]["schedule"] == "StepSchedule"
    assert high.epsilon.min() < low.epsilon.min()
    assert len(np.unique(high.epsilon[0])) == 5, "a staircase of 5 levels"
    figure = plots.curriculum_figure(high)
    assert "StepSchedule" in figure.axes[0].get_title()


def test_curriculum_explorer_redraws_when_a_setting_changes():
    explorer = widgets.curriculum_explorer(num_steps=200)
    message = find(explorer, ipywidgets.HTML)[0]
    before, pictures = message.value, [shown(explorer)]
    assert before.startswith("first episode's mean return")
    find(explorer, ipywidgets.FloatSlider)[0].value = 0.9
    assert message.value.startswith("first episode's mean return") and message.value != before
    pictures.append(shown(explorer))
    find(explorer, ipywidgets.Dropdown)[0].value = "step"
    pictures.append(shown(explorer))
    assert len(set(pictures)) == len(pictures), "each setting draws a new picture"


def test_attention_explorer_redraws_for_layer_head_and_step(evaluation):
    model, _, played = evaluation
    maps = probe.attention_maps(model, played)
    _, prev_rewards = previous_actions_and_rewards(played, model.config.num_actions)
    figure = plots.attention_figure(maps[0], prev_rewards[0], layer=1, head=0, step=30, episode_length=20)
    assert figure.axes[0].get_title() == "layer 1, head 0" and len(figure.axes[1].patches) == 31
    explorer = widgets.attention_explorer(maps, prev_rewards, index=1)
    sliders = {slider.description: slider for slider in find(explorer, ipywidgets.IntSlider)}
    assert (sliders["layer"].max, sliders["head"].max, sliders["time step"].max) == (1, 1, played.num_steps - 1)
    pictures = [shown(explorer)]
    for name, value in (("time step", 5), ("head", 1), ("layer", 0)):
        sliders[name].value = value
        pictures.append(shown(explorer))
    assert len(set(pictures)) == len(pictures), "each setting draws a new picture"


def test_plots_added_for_the_course_draw():
    assert plots.cell_values(np.arange(81).reshape(9, 9)).texts
    assert len(plots.attention_grid(np.random.default_rng(0).random((2, 3, 10, 10))).axes) == 6
    np.testing.assert_array_equal(plots.clip_attention(np.array([0.0, 0.1, 0.2, 10.0]), quantile=0.5), [0.0, 0.1, 0.2, 0.2])


def test_window_noise_shows_a_long_history_flat_and_a_short_one_falling():
    from icrl_lab.schedules import LinearSchedule

    ax = plots.window_noise(LinearSchedule(floor=0.412), {"20 episodes": 400, "20,000 episodes": 400_000}, window_steps=80)
    short, long = (line.get_ydata() for line in ax.get_lines())
    assert 0.12 < short[0] - short[-1] < 0.14  # the recipe's histories fall about 0.13 across one window
    assert long[0] - long[-1] < 1e-3            # the paper's are flat
    assert ax.get_title() == "epsilon inside one 80-step window, 30% into the history"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["20 episodes", "20,000 episodes"]
    with pytest.raises(ValueError, match="shorter than window_steps"):
        plots.window_noise(LinearSchedule(), {"tiny": 40}, window_steps=80)
