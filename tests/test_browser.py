"""A real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright, every widget driven.

A small notebook holding the course's four widgets (the Dark Room player, the curriculum explorer, the
rollout viewer and the attention explorer, the last two over a small untrained model) is written into a
temporary folder, JupyterLab serves that folder on a free port with a known token, and Chromium opens the
notebook and runs all its cells. Each widget is then clicked, slid and picked several times; after each
interaction its output must hold exactly one figure, and a figure other than the one before (the
player's status must also name the new step). A screenshot is kept in tests/artifacts/. The test skips,
saying why, when Playwright or a Chromium cannot be had; ICRL_LAB_CHROMIUM names a Chromium other than
the system one.
"""
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from test_notebooks import kernel_environment

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
NOTEBOOK = "widgets.ipynb"
CELLS = [
    """import torch
from icrl_lab import probe, widgets
from icrl_lab.envs import dark_room_goals
from icrl_lab.evaluate import in_context_rollout
from icrl_lab.histories import previous_actions_and_rewards
from icrl_lab.models import ADConfig, ICRLTransformer

torch.manual_seed(0)
model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=40, d_model=16,
                                 n_layer=2, n_head=2))
frame, played = in_context_rollout(model, "DarkRoom", dark_room_goals("test")[:3], episodes=4, mode="sample")
maps = probe.attention_maps(model, played)
_, prev_rewards = previous_actions_and_rewards(played, model.config.num_actions)""",
    "widgets.dark_room_player(goal=(3, 4))",
    "widgets.curriculum_explorer(num_steps=200)",
    "widgets.rollout_viewer(played, frame)",
    "widgets.attention_explorer(maps, prev_rewards, index=1, episode_length=20)",
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    for candidate in (os.environ.get("ICRL_LAB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Chromium found (install it with `apt-get install -y chromium`, or set ICRL_LAB_CHROMIUM)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab server on a temporary folder holding the widgets' notebook; yields its base URL and token."""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                     "language": "python"}}),
                   tmp_path / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}", "--LabApp.extension_manager=readonly",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", f"--LabApp.user_settings_dir={tmp_path / 'settings'}"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        env={**kernel_environment(), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def picture(widget) -> str:
    """The one figure a widget's output shows (its image source): exactly one, never a pile."""
    images = widget.locator(".widget-output img")
    count = images.count()
    assert count == 1, f"the widget's output holds {count} images, not one"
    return images.first.get_attribute("src")


def new_picture(widget, before: str, timeout: float = 60) -> str:
    """Wait until the widget shows a figure other than `before`; return it (checking there is one only)."""
    deadline = time.monotonic() + timeout
    while True:
        images = widget.locator(".widget-output img")
        if images.count() == 1 and images.first.get_attribute("src") != before:
            time.sleep(0.3)  # let a second image arrive, if the output were to append one
            return picture(widget)
        assert time.monotonic() < deadline, "the widget's figure did not change after the interaction"
        time.sleep(0.2)


def set_slider(widget, description: str, value):
    """Type a value into a slider's readout, as a person would, and press Enter."""
    slider = widget.locator(".widget-slider", has=widget.page.locator(".widget-label", has_text=re.compile(f"^{description}$")))
    readout = slider.locator(".widget-readout")
    readout.click()
    readout.press("Control+A")
    readout.type(str(value))
    readout.press("Enter")


def click(widget, name: str):
    widget.locator(".widget-button, .widget-toggle-button", has_text=re.compile(f"^{name}$")).click()


def drive_player(page):
    player = page.locator(".icrl-lab-dark-room-player")
    player.scroll_into_view_if_needed()
    status = player.locator(".widget-html")
    shown = picture(player)
    for n, action in enumerate(["up", "noop", "left", "down"], start=1):
        click(player, action)
        status.filter(has_text=f"step {n} of 20").wait_for(timeout=60_000)
        shown = new_picture(player, shown)
    assert "last reward" in status.inner_text()
    click(player, "reveal the goal")
    shown = new_picture(player, shown)
    click(player, "new episode")
    status.filter(has_text="step 0 of 20").wait_for(timeout=60_000)
    assert "not counted" in status.inner_text(), "leaving an episode half-way must say it is not counted"
    new_picture(player, shown)
    page.screenshot(path=ARTIFACTS / "browser_dark_room_player.png")


def drive_curriculum_explorer(page):
    explorer = page.locator(".icrl-lab-curriculum-explorer")
    explorer.scroll_into_view_if_needed()
    shown = picture(explorer)
    for schedule in ("step", "exponential"):
        explorer.locator("select").select_option(schedule)
        shown = new_picture(explorer, shown)
    message = explorer.locator(".widget-html").inner_text()
    set_slider(explorer, "max_perf", 0.9)
    shown = new_picture(explorer, shown)
    explorer.locator(".widget-html").filter(has_text=re.compile("first episode")).wait_for(timeout=60_000)
    assert explorer.locator(".widget-html").inner_text() != message, "the summary must follow max_perf"
    page.screenshot(path=ARTIFACTS / "browser_curriculum_explorer.png")


def drive_rollout_viewer(page):
    viewer = page.locator(".icrl-lab-rollout-viewer")
    viewer.scroll_into_view_if_needed()
    shown, seen = picture(viewer), set()
    seen.add(shown)
    for name in ("next episode", "next episode", "previous episode"):
        click(viewer, name)
        shown = new_picture(viewer, shown)
        seen.add(shown)
    viewer.locator("select").select_option(index=2)
    shown = new_picture(viewer, shown)
    assert shown not in seen, "another task draws another figure"
    page.screenshot(path=ARTIFACTS / "browser_rollout_viewer.png")


def drive_attention_explorer(page):
    explorer = page.locator(".icrl-lab-attention-explorer")
    explorer.scroll_into_view_if_needed()
    shown = picture(explorer)
    for name, value in (("time step", 5), ("head", 1), ("layer", 0)):
        set_slider(explorer, name, value)
        shown = new_picture(explorer, shown)
    page.screenshot(path=ARTIFACTS / "browser_attention_explorer.png")


def test_every_widget_shows_one_new_figure_after_each_interaction(jupyter_lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    executable = chromium_path()
    url, token = jupyter_lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except sync_api.Error as error:
            pytest.skip(f"Chromium at {executable} could not be started by Playwright: {error}")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            # JupyterLab may ask which kernel to start; the notebook's own (python3) is the one it offers.
            try:
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=15_000)
            except sync_api.TimeoutError:
                pass
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
                                   timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            for name in ("dark-room-player", "curriculum-explorer", "rollout-viewer", "attention-explorer"):
                widget = page.locator(f".icrl-lab-{name}")
                widget.scroll_into_view_if_needed(timeout=240_000)
                widget.locator(".widget-output img").first.wait_for(timeout=240_000)
            drive_player(page)
            drive_curriculum_explorer(page)
            drive_rollout_viewer(page)
            drive_attention_explorer(page)
        except (sync_api.Error, AssertionError):
            page.screenshot(path=ARTIFACTS / "browser_failure.png", full_page=True)
            raise
        finally:
            browser.close()
