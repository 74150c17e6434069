"""Fixtures of the browser test: a JupyterLab server and Debian's Chromium driven by Playwright.

Run with `make test-browser` (it installs the `browser` extra and the lab settings, then runs
`pytest tests/browser`). Nothing here is collected unless tests/browser is named on pytest's command
line: `make test` and a bare `pytest` leave it out (the Makefile's test targets also pass
--ignore=tests/browser).

Environment:
  PFGM_LITE_BROWSER_TIMEOUT  seconds for each wait (server start, running a notebook, a widget redraw);
                             default 300. Waits poll; they end as soon as the condition holds.
  PFGM_LITE_CHROMIUM         the Chromium binary (default /usr/bin/chromium, Debian's package).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pfgm_lite.runtime import seconds_from_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
SCREENS = ROOT / "build" / "screens"
DEFAULT_TIMEOUT = 300.0
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# The flags this machine needs (no sandbox as root, no GPU, no network but loopback).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Test-only JupyterLab user settings (a fresh, temporary user-settings folder): render every cell (no
# windowing, so that every prompt and output is in the page) and never save the served copies.
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": '{"autosave": false}',
}


def pytest_ignore_collect(collection_path, config):
    """Collect tests/browser only when it (or a file in it) is named on the command line."""
    invocation = Path(config.invocation_params.dir)
    for arg in config.args:
        target = (invocation / arg.split("::", 1)[0]).resolve()
        if target == HERE or HERE in target.parents:
            return None
    return True


def browser_timeout() -> float:
    """Seconds for each wait: env PFGM_LITE_BROWSER_TIMEOUT (default 300)."""
    return seconds_from_env("PFGM_LITE_BROWSER_TIMEOUT", DEFAULT_TIMEOUT)


def wait_until(condition, timeout: float, interval: float = 0.25):
    """Poll condition() until it returns something truthy (returned) or `timeout` s pass (-> None)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def running(process) -> bool:
    """Whether a psutil.Process still runs (a zombie has ended: only its parent's wait() is missing)."""
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(pid: int) -> list:
    """psutil.Process objects of every process below `pid` (kernels run in sessions of their own)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_process_tree(proc: subprocess.Popen, timeout: float) -> list[str]:
    """SIGTERM the process group of `proc` and the processes below it, then SIGKILL what is left.

    Returns a description of the processes that had to be killed (empty when SIGTERM was enough).
    Raises AssertionError when something survives SIGKILL.
    """
    import psutil

    below = descendants(proc.pid)
    killed = []
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed.append(f"jupyter lab (pid {proc.pid})")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    # JupyterLab shuts its kernels down on SIGTERM; whatever is still running is killed
    wait_until(lambda: not any(running(p) for p in below), min(timeout, 30))
    for p in below:
        if running(p):
            with contextlib.suppress(psutil.Error):
                killed.append(" ".join(p.cmdline()[:3]) + f" (pid {p.pid})")
                p.kill()
    wait_until(lambda: not any(running(p) for p in below), 30)
    group = [p for p in psutil.process_iter() if _pgid(p) == proc.pid]
    survivors = [p.pid for p in below + group if running(p)]
    assert not survivors, f"processes of the JupyterLab server survived SIGKILL: {survivors}"
    return killed


def _pgid(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


@pytest.fixture(scope="session", autouse=True)
def _teardown_on_sigterm():
    """A SIGTERM (CI's time limit, `kill`) ends the test like Ctrl-C: the fixtures still stop the server
    and the browser (Python's default on SIGTERM is to die without running them)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def timeout() -> float:
    return browser_timeout()


def emptied_screens(folder: Path) -> Path:
    """`folder`, made if missing and emptied of the PNGs of an earlier run."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


@pytest.fixture(scope="session")
def screens() -> Path:
    """build/screens/, emptied of the PNGs of an earlier run."""
    return emptied_screens(SCREENS)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = os.environ.get("PFGM_LITE_CHROMIUM", "").strip() or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"no Chromium at {path}: install Debian's package (`apt-get install -y chromium`, as .ci/run does) "
            "or set PFGM_LITE_CHROMIUM to a Chromium binary. Playwright's own browser download is not used.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        pytest.fail("playwright is not installed in this environment: run `make test-browser` "
                    "(it installs the `browser` extra: pip install -e '.[browser]')", pytrace=False)
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def lab(tmp_path_factory, timeout):
    """A JupyterLab server on a free loopback port, with a token, in quick mode (PFGM_LITE_QUICK=1).

    It serves a temporary copy of notebooks/ beside a copy of benchmarks/results/ (JupyterLab never
    writes to the real notebooks), with fresh user settings and workspaces (so the page opens as on a
    first visit); the project's lab settings come from the environment, where `make lab` /
    `make test-browser` install them.
    Yields a dict with base url, token, the served folder and the log file.
    """
    home = tmp_path_factory.mktemp("lab")
    served = home / "notebooks"
    shutil.copytree(ROOT / "notebooks", served, ignore=shutil.ignore_patterns(
        "runs", ".ipynb_checkpoints", "__pycache__", "conftest.py"))
    # the notebooks read ../benchmarks/results (as in a clone): the copy keeps that layout
    shutil.copytree(ROOT / "benchmarks" / "results", home / "benchmarks" / "results")
    settings = home / "user-settings"
    for name, text in USER_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for sub in ("workspaces", "runtime"):
        (home / sub).mkdir()

    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        PFGM_LITE_QUICK="1",
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [str(BIN / "jupyter"), "lab", str(served), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.token={token}", "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = home / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited early ({proc.returncode}):\n{log_path.read_text()}")
        try:
            return http_get(f"{base}/api/status?token={token}")[0] == 200
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return False

    try:
        if not wait_until(answers, timeout):
            raise AssertionError(f"JupyterLab did not answer on port {port} within {timeout:g} s "
                                 f"(PFGM_LITE_BROWSER_TIMEOUT):\n{log_path.read_text()}")
        yield {"base": base, "token": token, "served": served, "log": log_path, "proc": proc}
    finally:
        try:
            killed = stop_process_tree(proc, timeout=min(timeout, 60))
            if killed:
                print(f"\nkilled after SIGTERM: {killed}", file=sys.stderr)
        finally:
            log.close()


@pytest.fixture(scope="session")
def browser(playwright_api, chromium, tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile; closed, and its processes gone, at the end."""
    import psutil

    profile = tmp_path_factory.mktemp("chromium-profile")
    context = playwright_api.chromium.launch_persistent_context(
        str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000}, device_scale_factor=1,
    )

    def chromium_processes() -> list:
        """Chromium's processes: below this one (Playwright's driver starts them), or using the profile."""
        found = {}
        for p in descendants(os.getpid()):
            with contextlib.suppress(psutil.Error):
                if "chrom" in p.name().lower():
                    found[p.pid] = p
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any(str(profile) in part for part in (p.info["cmdline"] or [])):
                found[p.pid] = p
        return [p for p in found.values() if running(p)]

    try:
        yield context
    finally:
        before = chromium_processes()
        try:
            context.close()
        finally:
            wait_until(lambda: not any(running(p) for p in before), 30)
            for p in [p for p in before if running(p)] + chromium_processes():
                with contextlib.suppress(psutil.Error):
                    p.kill()
            assert wait_until(lambda: not any(running(p) for p in before) and not chromium_processes(), 30), \
                f"Chromium processes survived SIGKILL: {[p.pid for p in before + chromium_processes() if running(p)]}"
