"""`make lab` starts JupyterLab on notebooks/ and serves the notebooks."""
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

ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / ".venv" / ".installed"


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


def test_make_lab_serves_the_notebooks(tmp_path):
    assert STAMP.exists(), "run the tests through `make test` (it creates .venv/.installed)"
    port, token = _free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --ServerApp.token={token} --ServerApp.open_browser=False"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"],
        cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"make lab exited early:\n{(tmp_path / 'lab.log').read_text()}"
            try:
                status, _ = _get(f"{base}/lab?token={token}")
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"JupyterLab did not answer on port {port} within 60 s"

        status, body = _get(f"{base}/api/contents/?token={token}")
        assert status == 200
        names = {item["name"] for item in json.loads(body)["content"]}
        assert "00_welcome.ipynb" in names, names
        assert "pyproject.toml" not in names, "lab's root must be notebooks/, not the repo"

        status, _ = _get(f"{base}/api/contents/?token=wrong-{token}")
        assert status == 403, "the token must be required"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise AssertionError("make lab did not stop on SIGTERM")
        log.close()
    assert proc.returncode is not None
    # nothing of the process group is left behind
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        pass
    else:
        time.sleep(2)
        try:
            os.killpg(proc.pid, 0)
            raise AssertionError("processes of `make lab` survived SIGTERM")
        except ProcessLookupError:
            pass
