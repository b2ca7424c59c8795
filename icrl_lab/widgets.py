"""Interactive front ends for the notebooks: ipywidgets wiring only, over plain code.

The game and the episode replays live in `play`, the figures in `plots`; each function here builds one
widget, whose buttons and sliders call them and redraw. Written against the API that ipywidgets 7.7
and 8 share (Colab ships 7.x).
"""
from __future__ import annotations

import base64
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt

from . import plots
from .play import DarkRoomGame, curriculum_preview, task_marks
from .schedules import SCHEDULES


def _show(output: widgets.Output, figure):
    """Make `output` show `figure` alone, in place of what it showed before; the figure is closed.

    The outputs are set outright, as one PNG: `Output.clear_output` only asks the front end to clear and
    leaves `outputs` as they were, so appending after it piles figures up in the notebook; and the
    Output widget's `with` block captures the kernel's output streams, which is fragile in headless
    kernels (papermill, nbval). Setting `outputs` behaves the same on ipywidgets 7 and 8 and needs no
    inline matplotlib backend."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    output.outputs = ({"output_type": "display_data", "metadata": {},
                       "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                                "text/plain": repr(figure)}},)


def _named(widget: widgets.Widget, name: str) -> widgets.Widget:
    """Give a widget's outer box the CSS class `icrl-lab-NAME`, by which a page (or a browser test) finds it."""
    widget.add_class(f"icrl-lab-{name}")
    return widget


# --- Dark Room player -------------------------------------------------------------------------------

def dark_room_player(goal=None, seed: int = 0) -> widgets.Widget:
    """Play Dark Room with buttons: you see your path and your rewards, never the goal (unless you reveal it)."""
    game = DarkRoomGame(goal, seed)
    status = widgets.HTML(layout=widgets.Layout(min_height="2em"))
    picture = widgets.Output()
    reveal = widgets.ToggleButton(description="reveal the goal", value=False)

    def refresh(*_):
        status.value = f"<b>{game.status()}</b>"
        _show(picture, plots.dark_room_game_figure(game, reveal.value))

    def move(button):
        if not game.done:
            game.act(button.description)
        refresh()

    def button(name, handler):
        b = widgets.Button(description=name, layout=widgets.Layout(width="80px"))
        b.on_click(handler)
        return b

    blank = widgets.Box(layout=widgets.Layout(width="80px"))
    pad = widgets.VBox([
        widgets.HBox([blank, button("up", move), blank]),
        widgets.HBox([button("left", move), button("noop", move), button("right", move)]),
        widgets.HBox([blank, button("down", move), blank]),
    ])
    again = button("new episode", lambda _: (game.new_episode(), refresh()))
    other = button("new room", lambda _: (game.new_room(), refresh()))
    again.layout.width = other.layout.width = "120px"
    reveal.observe(refresh, names="value")
    refresh()
    return _named(widgets.VBox([status, widgets.HBox([pad, widgets.VBox([again, other, reveal])]), picture]),
                  "dark-room-player")


# --- in-context rollout viewer ----------------------------------------------------------------------

def rollout_viewer(played, frame) -> widgets.Widget:
    """Step through an in-context evaluation episode by episode: pick a task, then move through its episodes.

    played, frame: what `evaluate.in_context_rollout` returns."""
    family = played.metadata["env_family"]
    labels = [(f"task {i}: " + ", ".join(f"{k} {v}" for k, v in task_marks(family, task).items()), i)
              for i, task in enumerate(played.tasks)]
    task = widgets.Dropdown(options=labels, value=0, description="task")
    episode = widgets.IntSlider(value=0, min=0, max=int(frame["episode"].max()), description="episode",
                                continuous_update=False)
    back, forward = widgets.Button(description="previous episode"), widgets.Button(description="next episode")
    picture = widgets.Output()

    def refresh(*_):
        _show(picture, plots.rollout_figure(played, frame, task.value, episode.value))

    back.on_click(lambda _: setattr(episode, "value", max(episode.min, episode.value - 1)))
    forward.on_click(lambda _: setattr(episode, "value", min(episode.max, episode.value + 1)))
    task.observe(refresh, names="value")
    episode.observe(refresh, names="value")
    refresh()
    return _named(widgets.VBox([widgets.HBox([task, episode]), widgets.HBox([back, forward]), picture]),
                  "rollout-viewer")


# --- curriculum explorer ----------------------------------------------------------------------------

def curriculum_explorer(num_steps: int = 1000, seed: int = 0) -> widgets.Widget:
    """Change the noise schedule and max_perf and see the learning curve of the AD^eps data they make."""
    schedule = widgets.Dropdown(options=sorted(SCHEDULES), value="linear", description="schedule")
    max_perf = widgets.FloatSlider(value=0.5, min=0.2, max=1.0, step=0.05, description="max_perf",
                                   continuous_update=False)
    message = widgets.HTML()
    picture = widgets.Output()

    def refresh(*_):
        message.value = "collecting ..."
        data = curriculum_preview(schedule.value, max_perf.value, num_steps=num_steps, seed=seed)
        summary = data.summary()
        message.value = (f"first episode's mean return {summary['mean_return_first_episode']:.2f}, "
                         f"last {summary['mean_return_last_episode']:.2f}")
        _show(picture, plots.curriculum_figure(data))

    schedule.observe(refresh, names="value")
    max_perf.observe(refresh, names="value")
    refresh()
    return _named(widgets.VBox([widgets.HBox([schedule, max_perf]), message, picture]), "curriculum-explorer")


# --- attention explorer -----------------------------------------------------------------------------

def attention_explorer(maps, prev_rewards, index: int = 0, episode_length: int | None = None, histories=None,
                       row: int | None = None, num_actions: int | None = None) -> widgets.Widget:
    """Pick a layer, a head and a time step, and see where that step's attention goes.

    maps: (histories, layers, heads, steps, steps) from `probe.attention_maps(model, histories)`;
    prev_rewards: (histories, steps), the reward each step's token carries. With the grid-world
    `histories` the maps were made from (row: this history's row in them, `index` by default; num_actions:
    the model's), the picture also shows the grid, shaded by how much attention each cell's steps get,
    with the goal and the episode's path, and marks the attended steps that were rewarded or on the goal."""
    _, layers, heads, steps, _ = maps.shape
    layer = widgets.IntSlider(value=layers - 1, min=0, max=layers - 1, description="layer", continuous_update=False)
    head = widgets.IntSlider(value=0, min=0, max=heads - 1, description="head", continuous_update=False)
    step = widgets.IntSlider(value=steps - 1, min=0, max=steps - 1, description="time step", continuous_update=False)
    picture = widgets.Output()
    grid = None
    if histories is not None:
        from .play import grid_size
        from .probe import step_labels

        row = index if row is None else row
        marks = task_marks(histories.metadata["env_family"], histories.tasks[row])
        grid = (step_labels(histories, num_actions or int(histories.actions.max()) + 1, steps), grid_size(histories),
                marks.get("goal"))

    def refresh(*_):
        if grid is None:
            figure = plots.attention_figure(maps[index], prev_rewards[index], layer.value, head.value, step.value,
                                            episode_length)
        else:
            labels, size, goal = grid
            figure = plots.attention_on_grid(maps, labels, size, index, row, layer.value, head.value, step.value, goal)
        _show(picture, figure)

    for slider in (layer, head, step):
        slider.observe(refresh, names="value")
    refresh()
    return _named(widgets.VBox([widgets.HBox([layer, head]), step, picture]), "attention-explorer")
