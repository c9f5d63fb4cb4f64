# Cast SMS for GoHighLevel — one Dockerfile, one target per process:
#   docker build --target gateway|sender|oauth|sandbox -t castghl/<target> .
# Compose builds them all (docker-compose.yaml). Why each step is as it is: docs/deploy.md.
#
# Only PYTHON_IMAGE is pulled. uv comes from PyPI and installs exactly what uv.lock pins
# for one workspace member (--frozen: the lock is never re-resolved; --no-dev: no test or
# lint tools). Layers are ordered so a code-only change reuses the dependency layer:
# lock + pyproject files → venv (third-party packages, ours as editable paths) → code.
ARG PYTHON_IMAGE=python:3.12-slim

# --- build: uv and the workspace's metadata, no code ---------------------------------------
FROM ${PYTHON_IMAGE} AS build
# uv pinned by version and hash (deploy/docker/uv-requirements.txt).
COPY deploy/docker/uv-requirements.txt /tmp/uv-requirements.txt
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        --require-hashes --only-binary=:all: -r /tmp/uv-requirements.txt
# The venv lives at the path the runtime images use: its scripts and editable .pth files
# name absolute paths. Bytecode is compiled here, once, because the runtime user cannot
# write __pycache__ next to root-owned files.
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/sandbox/pyproject.toml libs/sandbox/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/sender/pyproject.toml services/sender/
COPY services/oauth/pyproject.toml services/oauth/
# Our packages are installed editable (a .pth naming src/), which needs only the pyproject
# and one module per package, so this layer does not change when code does. The stand-in
# is the package's own __init__.py, which the code COPY below replaces.
RUN for member in libs/common libs/sandbox services/gateway services/sender services/oauth; do \
        mkdir -p "$member/src/castghl/${member#*/}" \
        && touch "$member/src/castghl/${member#*/}/__init__.py"; done

FROM build AS deps-gateway
RUN uv sync --frozen --no-dev --package castghl-gateway

FROM build AS deps-sender
RUN uv sync --frozen --no-dev --package castghl-sender

FROM build AS deps-oauth
RUN uv sync --frozen --no-dev --package castghl-oauth

FROM build AS deps-sandbox
RUN uv sync --frozen --no-dev --package castghl-sandbox

# --- runtime: the interpreter, an unprivileged user, the health check ---------------------
FROM ${PYTHON_IMAGE} AS runtime
# Written directly: Debian's minimal images (the lab's stand-in) have no useradd.
RUN echo 'castghl:x:10001:10001:Cast SMS for GHL:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'castghl:x:10001:' >> /etc/group
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY deploy/docker/healthcheck.py /app/healthcheck.py

# --- one image per process: dependencies, then code, then the process ---------------------
FROM runtime AS gateway
COPY --from=deps-gateway /app /app
COPY libs/common/src libs/common/src
COPY services/gateway/src services/gateway/src
RUN python -m compileall -q libs services
USER 10001:10001
ENV PORT=3002
EXPOSE 3002
# Exec form: the service is PID 1 and gets SIGTERM itself, so it drains before exiting.
ENTRYPOINT ["castghl-gateway"]

FROM runtime AS sender
COPY --from=deps-sender /app /app
COPY libs/common/src libs/common/src
COPY services/sender/src services/sender/src
RUN python -m compileall -q libs services
USER 10001:10001
ENV PORT=3004
EXPOSE 3004
ENTRYPOINT ["castghl-sender"]

FROM runtime AS oauth
COPY --from=deps-oauth /app /app
COPY libs/common/src libs/common/src
COPY services/oauth/src services/oauth/src
RUN python -m compileall -q libs services
USER 10001:10001
ENV PORT=3003
EXPOSE 3003
ENTRYPOINT ["castghl-oauth"]

# The GHL and Cast simulators (`castghl-sandbox ghl|cast`), for the sandbox profile only.
FROM runtime AS sandbox
COPY --from=deps-sandbox /app /app
COPY libs/common/src libs/common/src
COPY libs/sandbox/src libs/sandbox/src
RUN python -m compileall -q libs
USER 10001:10001
EXPOSE 9101 9102
ENTRYPOINT ["castghl-sandbox"]
CMD ["ghl", "--host", "0.0.0.0", "--port", "9101"]
