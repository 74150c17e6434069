"""`make lab` starts JupyterLab on notebooks/ and serves the notebooks.

Waits are deadlines, not sleeps: the test polls until JupyterLab answers (or stops), up to PFGM_LITE_LAB_TIMEOUT
seconds (default 180; raise it on a slow or busy machine).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pfgm_lite.runtime import seconds_from_env

ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / ".venv" / ".installed"
DEFAULT_TIMEOUT = 180.0


def lab_timeout() -> float:
    """Seconds to wait for JupyterLab to answer, and again for it to stop: env PFGM_LITE_LAB_TIMEOUT."""
    return seconds_from_env("PFGM_LITE_LAB_TIMEOUT", DEFAULT_TIMEOUT)


def wait_until(condition, timeout: float, interval: float = 0.2) -> bool:
    """Poll condition() until it is true (-> True) or `timeout` seconds have passed (-> False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_venv_stamp_is_up_to_date():
    """`make` run by the tests must not reinstall the environment."""
    assert STAMP.exists(), "run the tests through `make test` (it creates .venv/.installed)"
    q = subprocess.run(["make", "-q", str(STAMP.relative_to(ROOT))], cwd=ROOT)
    assert q.returncode == 0, "the venv stamp is older than pyproject.toml"


def test_lab_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("PFGM_LITE_LAB_TIMEOUT", raising=False)
    assert lab_timeout() == DEFAULT_TIMEOUT
    monkeypatch.setenv("PFGM_LITE_LAB_TIMEOUT", "600")
    assert lab_timeout() == 600.0
    for bad in ("soon", "0", "-5", "inf"):
        monkeypatch.setenv("PFGM_LITE_LAB_TIMEOUT", bad)
        with pytest.raises(ValueError, match=f"PFGM_LITE_LAB_TIMEOUT must be a number of seconds > 0, got '{bad}'"):
            lab_timeout()


def test_make_lab_serves_the_notebooks(tmp_path):
    assert STAMP.exists(), "run the tests through `make test` (it creates .venv/.installed)"
    timeout = lab_timeout()
    port, token = _free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --ServerApp.token={token} --ServerApp.open_browser=False"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    log_path = tmp_path / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"],
        cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def lab_answers() -> bool:
        assert proc.poll() is None, f"make lab exited early:\n{log_path.read_text()}"
        try:
            return _get(f"{base}/lab?token={token}")[0] == 200
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return False

    try:
        assert wait_until(lab_answers, timeout), \
            f"JupyterLab did not answer on port {port} within {timeout:g} s (PFGM_LITE_LAB_TIMEOUT)"

        status, body = _get(f"{base}/api/contents/?token={token}")
        assert status == 200
        names = {item["name"] for item in json.loads(body)["content"]}
        assert "00_welcome.ipynb" in names, names
        assert "pyproject.toml" not in names, "lab's root must be notebooks/, not the repo"

        status, _ = _get(f"{base}/api/contents/?token=wrong-{token}")
        assert status == 403, "the token must be required"
        assert proc.poll() is None, "make lab must keep serving until it is stopped"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
            raise AssertionError(f"make lab did not stop within {timeout:g} s of SIGTERM")
        finally:
            log.close()
    # nothing of the process group is left behind (JupyterLab may take a moment to shut its kernels down)
    assert wait_until(lambda: not group_alive(proc.pid), timeout), "processes of `make lab` survived SIGTERM"
