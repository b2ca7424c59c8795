"""A real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright, a widget clicked.

Notebook 01 is copied into a temporary folder (so that nothing is ever saved back into notebooks/),
JupyterLab serves that folder on a free port with a known token, and Chromium opens the notebook, runs
all its cells and clicks the Dark Room player's "up" button: the player's status must go from step 0
to step 1. A screenshot is kept in tests/artifacts/. The test skips, saying why, when Playwright or a
Chromium cannot be had; ICRL_LAB_CHROMIUM names a Chromium other than the system one.
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

import pytest
from test_notebooks import kernel_environment

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
NOTEBOOK = ROOT / "notebooks" / "01_dark_worlds.ipynb"
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
    """A JupyterLab server on a temporary copy of notebook 01; yields its base URL and token."""
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
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


def test_dark_room_player_renders_and_answers_a_click(jupyter_lab):
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
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
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

            status = page.locator(".widget-html", has_text="step 0 of 20")
            status.wait_for(timeout=180_000)
            up = page.locator(".widget-button", has_text=re.compile(r"^up$"))
            up.scroll_into_view_if_needed()
            up.click()
            player = page.locator(".widget-vbox", has=page.locator(".widget-html", has_text="step 1 of 20")).first
            player.wait_for(timeout=60_000)
            player.locator("img").first.wait_for(timeout=60_000)  # the player's picture of the room
            player.scroll_into_view_if_needed()
            page.screenshot(path=ARTIFACTS / "browser_dark_room_player.png")
        except sync_api.Error:
            page.screenshot(path=ARTIFACTS / "browser_failure.png", full_page=True)
            raise
        finally:
            browser.close()
