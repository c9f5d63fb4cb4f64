"""A stack's service whose start-up fails is started again once, as its supervisor would
(docker-compose.yaml: `restart: unless-stopped`); twice is the test's failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from castghl.common.serve import STARTUP_FAILURE
from castghl.sandbox.server import free_port
from castghl.sandbox.stack import Process, StackError

# Fails its start-up (exit 3) as long as `failures` lists more failures than `tries`
# records, then answers 200 to everything, as a ready service does.
SERVICE = f"""
import http.server, pathlib, sys
tries = pathlib.Path(sys.argv[1]); failures = int(sys.argv[2]); port = int(sys.argv[3])
done = len(tries.read_text()) if tries.exists() else 0
tries.write_text("x" * (done + 1))
if done < failures:
    sys.exit({STARTUP_FAILURE})
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""


def service(tmp_path: Path, failures: int) -> Process:
    port = free_port()
    process = Process("svc", ["python", "-c", SERVICE, str(tmp_path / "tries"), str(failures),
                              str(port)], {}, tmp_path / "svc.log", url=f"http://127.0.0.1:{port}")
    process.start()
    return process


def test_a_failed_start_up_is_started_again_once(tmp_path: Path) -> None:
    process = service(tmp_path, failures=1)
    try:
        process.wait_ready(timeout=60)
        assert (tmp_path / "tries").read_text() == "xx"
    finally:
        process.kill()


def test_a_second_failed_start_up_is_the_tests_failure(tmp_path: Path) -> None:
    process = service(tmp_path, failures=2)
    with pytest.raises(StackError, match=f"exited with {STARTUP_FAILURE}"):
        process.wait_ready(timeout=60)
    assert (tmp_path / "tries").read_text() == "xx"
