"""Container health check: exit 0 when this container's service answers 200.

    python /app/healthcheck.py            GET http://127.0.0.1:$PORT/readyz
    python /app/healthcheck.py PATH PORT  another path or port (the simulators)

The images carry no curl (python:*-slim has none); the interpreter is already there, and
the standard library only, so a check costs no import of the service's dependencies.
"""

import os
import sys
import urllib.request

path = sys.argv[1] if len(sys.argv) > 1 else "/readyz"
port = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("PORT", "")
if not port.isdigit():
    sys.exit("healthcheck: PORT is not set")
url = f"http://127.0.0.1:{port}{path}"
try:
    with urllib.request.urlopen(url, timeout=4) as answer:
        status = answer.status
except Exception as exc:  # any failure is "unhealthy"; the reason shows in `docker inspect`
    sys.exit(f"healthcheck: {url}: {exc}")
sys.exit(0 if status == 200 else f"healthcheck: {url}: {status}")
