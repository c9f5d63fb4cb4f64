# Cast SMS for GoHighLevel — every command sets itself up (uv, the venv, the lock).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --frozen

.PHONY: help setup test test-stress lint typecheck unit integration e2e demo bench compose-test \
	compose-build \
	update-uv screenshots \
	clean

help:
	@echo "make demo    run the whole bridge locally against the GHL and Cast simulators"
	@echo "make test    lint, type-check and run every test (unit, integration, e2e)"
	@echo "make bench   benchmark the gateway and the outbound pipeline"
	@echo "make compose-test   build the images, run the sandbox stack in Docker with 3 senders"
	@echo "                    and check it end to end (needs a Docker API; docs/deploy.md)"
	@echo "make compose-build  only build those images"
	@echo "make test-stress    the whole suite while stress-ng keeps every core busy"
	@echo "make screenshots    the console's pages, from the browser tests, into docs/screenshots"
	@echo "make unit | integration | e2e | lint | typecheck"

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet
	@# The browser tests drive Debian's Chromium (never a browser Playwright downloads).
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium >/dev/null; } \
		|| { echo "setup: the browser tests need Debian's chromium (apt-get install chromium)" >&2; exit 2; }

lint: setup
	$(RUN) ruff check .

typecheck: setup
	$(RUN) mypy libs/common/src libs/sandbox/src services/gateway/src services/sender/src \
		services/oauth/src bench

unit: setup
	$(RUN) pytest -m unit

integration: setup
	$(RUN) pytest -m integration

e2e: setup
	$(RUN) pytest -m e2e

# Tests spend most of their time waiting on real processes, so a few run side by side
# (pytest-xdist), a module per worker: a module's tests share its stack.
TEST_WORKERS ?= 3
test: lint typecheck
	$(RUN) pytest -n $(TEST_WORKERS) --dist loadfile --durations=10

# The suite on a machine made slow on purpose: stress-ng (Debian's package, installed here
# if missing) keeps every core busy with twice as many workers as cores, so the tests get
# a fraction of the CPU, as on a crowded shared machine, and a test that depends on the
# machine's speed fails here first. `make test` stays CI's command; this one is for
# developers and reviewers.
STRESS_WORKERS ?= $(shell echo $$(( 2 * $$(nproc) )))
test-stress: lint typecheck
	@command -v stress-ng >/dev/null 2>&1 || apt-get install -y -qq stress-ng >/dev/null \
		|| { echo "test-stress: needs stress-ng (apt-get install stress-ng)" >&2; exit 2; }
	@stress-ng --cpu $(STRESS_WORKERS) --cpu-load 100 --timeout 2h --quiet & load=$$!; \
		trap 'kill $$load 2>/dev/null' EXIT; start=$$SECONDS; \
		$(RUN) pytest -n $(TEST_WORKERS) --dist loadfile; status=$$?; \
		echo "test-stress: pytest took $$((SECONDS - start)) s beside $(STRESS_WORKERS)" \
			"stress-ng workers on $$(nproc) cores"; \
		exit $$status

demo: setup
	$(RUN) castghl-demo

# The console's screenshots in docs/, from the browser tests' latest run.
screenshots: setup
	$(RUN) pytest -q -p no:xdist -m browser
	mkdir -p docs/screenshots && cp var/screenshots/console-*.png docs/screenshots/

# Pin uv for the image build by hash: make update-uv UV_VERSION=0.13.9
update-uv:
	bash deploy/docker/update-uv.sh $(UV_VERSION)

bench: setup
	$(RUN) python bench/run.py

# Needs a Docker API (DOCKER_HOST or /var/run/docker.sock) and `docker compose`; exits 2
# naming what is missing. Builds, runs and always removes its own project (down -v).
compose-test: setup
	$(RUN) python -m castghl.sandbox.compose

# The compose test's images alone (compose-test builds them again, from the cache).
compose-build: setup
	$(RUN) python -m castghl.sandbox.compose --build-only

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache var
