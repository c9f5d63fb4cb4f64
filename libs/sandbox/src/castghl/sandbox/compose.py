"""`make compose-test`: the whole bridge under Docker Compose, end to end.

Builds the images, starts `docker compose --profile sandbox` with three senders, waits
for every health check, installs a demo location through the OAuth redirect flow (as a
browser would, over the published ports), has the GHL simulator fire signed webhooks —
a burst, a duplicate delivered three times, a two-part text, a US number — and checks,
once the stack is provably quiet, that each message reached Cast exactly once (per part)
and got exactly one final GHL status. Then it `docker kill`s the sender that owns the
Cast lane in the middle of a second burst and checks again: nothing lost, nothing texted
twice. It prints a table of the counts, always tears the stack down (`down -v`) and exits
non-zero on any failure.

    python -m castghl.sandbox.compose [--senders 3] [--burst 40] [--kill-burst 150] [--keep]
    python -m castghl.sandbox.compose --build-only     (the images alone: CI builds them
                                                        while the tests run)

The cases, firing, waiting and the table are `castghl.sandbox.scenarios`, which the demo
plays on processes; driving and observing go through `ComposeBridge`, a
`castghl.sandbox.stack.Bridge` like the one the end-to-end tests use. It needs a Docker
API (DOCKER_HOST or the default socket) and the Compose v2 plugin; it says so and exits 2
when either is missing. Images follow PYTHON_IMAGE / RABBITMQ_IMAGE / MONGO_IMAGE when set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

from castghl.sandbox import scenarios
from castghl.sandbox.infra import docker_available
from castghl.sandbox.scenarios import PHONE, Case, fire, settle, table
from castghl.sandbox.slowloris import cut_off, trickle
from castghl.sandbox.stack import BridgeAt, StackError, in_flight
from castghl.sandbox.stack import parts_sent as parts_sent_in

PROJECT = "castghl-compose-test"
# Issue #14's drills: a broker restart, readiness back within 30 s of a healthy broker,
# and a database outage of at least a minute, each in the middle of a burst.
BROKER_DOWN_SECONDS = 10.0
READY_AGAIN_SECONDS = 30.0
MONGO_DOWN_SECONDS = 60.0
# The sandbox stack's fixed host ports: BASE_URL and GHL_MARKETPLACE_URL in
# deploy/sandbox/sandbox.env name them, because the browser follows those redirects.
PORTS = {"gateway": 3002, "oauth": 3003, "ghl-sim": 9101, "cast-sim": 9102}
SANDBOX_ENV = Path("deploy/sandbox/sandbox.env")
# Compose settings of the caller's shell or .env that would change what we start.
FOREIGN_ENV = ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_ENV_FILES",
               "CASTGHL_ENV_FILE", "CASTGHL_TAG", "GATEWAY_PUBLISH", "OAUTH_PUBLISH")


class ComposeTestError(RuntimeError):
    """The environment cannot run the test (no Docker, ports taken); not a test failure."""


# --- docker compose ----------------------------------------------------------------------

@dataclass
class Compose:
    """`docker compose` for one throwaway project of the sandbox profile, nothing else.

    Only docker-compose.yaml is read (-f), with an empty --env-file, so neither an
    operator's .env (production settings, COMPOSE_FILE) nor the caller's COMPOSE_*
    variables can turn this into anything but the sandbox.
    """

    root: Path
    project: str = PROJECT
    docker: str = field(default_factory=lambda: shutil.which("docker") or "docker")

    def env(self, *, serial: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        if serial:
            env["COMPOSE_PARALLEL_LIMIT"] = "1"
        return env

    def command(self, *args: str) -> list[str]:
        return [self.docker, "compose", "-p", self.project, "-f",
                str(self.root / "docker-compose.yaml"), "--env-file", os.devnull,
                "--profile", "sandbox", *args]

    def run(self, *args: str, capture: bool = False, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own fixed docker command lines
            self.command(*args), cwd=self.root, env=self.env(), text=True, check=check,
            capture_output=capture, timeout=timeout, stdin=subprocess.DEVNULL)

    def run_logged(self, log: Path, *args: str, serial: bool = False) -> None:
        """Run with the (long) output in `log`; on failure show its end and raise."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            done = subprocess.run(  # noqa: S603 - our own fixed docker command lines
                self.command(*args), cwd=self.root, env=self.env(serial=serial), text=True,
                check=False, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), flush=True)
            raise subprocess.CalledProcessError(done.returncode, self.command(*args))

    def docker_cli(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(  # noqa: S603 - our own fixed docker command lines
            [self.docker, *args], env=self.env(), text=True, capture_output=True,
            check=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return done.stdout

    def containers(self, service: str) -> list[str]:
        """Running containers of a service, by name."""
        out = self.run("ps", "--format", "{{.Name}}", service, capture=True).stdout
        return sorted(line for line in out.split() if line)


def preflight(compose: Compose, *, ports: bool = True) -> None:
    """Fail before building anything, with the reason and what to do about it."""
    if shutil.which(compose.docker) is None:
        raise ComposeTestError("the docker CLI is not installed")
    if not docker_available():
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise ComposeTestError(
            f"no Docker API answers at {host}. Start Docker (on the project's own machines: "
            '../shared/tools/container-lab up && eval "$(../shared/tools/container-lab env)")')
    version = subprocess.run(  # noqa: S603 - fixed command
        [compose.docker, "compose", "version", "--short"], text=True, capture_output=True,
        check=False, stdin=subprocess.DEVNULL)
    if version.returncode != 0:
        raise ComposeTestError("the Docker Compose v2 plugin (`docker compose`) is missing")
    busy = [f"{name} :{port}" for name, port in PORTS.items() if ports and _port_taken(port)]
    if busy:
        raise ComposeTestError(
            f"127.0.0.1 ports in use: {', '.join(busy)} — the sandbox stack publishes these; "
            "stop whatever holds them (another `docker compose --profile sandbox up`? "
            "see `docker compose ls`)")


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def sandbox_setting(root: Path, name: str) -> str:
    """A value of deploy/sandbox/sandbox.env, as compose reads it (quotes, \\n)."""
    for line in (root / SANDBOX_ENV).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"').replace("\\n", "\n")
    raise KeyError(name)


# --- the stack seen from this process --------------------------------------------------

def metrics(compose: Compose, container: str) -> str | None:
    """A service's /metrics text, read inside its container (senders publish no port);
    None when the container does not answer."""
    script = ("import os,urllib.request;print(urllib.request.urlopen("
              "f\"http://127.0.0.1:{os.environ['PORT']}/metrics\",timeout=5).read().decode())")
    try:
        return compose.docker_cli("exec", container, "python", "-c", script, timeout=30)
    except subprocess.SubprocessError:
        return None


def parts_sent(compose: Compose, container: str) -> float:
    """The sender's own count of parts Cast accepted."""
    return parts_sent_in(metrics(compose, container) or "")


# Counts each named queue's ready messages by a passive declare (which needs no
# permission), over the RABBITMQ_URL of the container it runs in.
_DEPTHS = """
import asyncio, os, sys, aio_pika
async def depths():
    total = 0
    async with await aio_pika.connect(os.environ["RABBITMQ_URL"]) as connection:
        for name in sys.argv[1:]:
            try:
                async with connection.channel() as channel:
                    queue = await channel.declare_queue(name, passive=True)
                    total += queue.declaration_result.message_count or 0
            except aio_pika.exceptions.AMQPError:
                pass  # gone meanwhile
    print(total)
asyncio.run(depths())
"""


def queued(compose: Compose) -> int:
    """Messages waiting in the broker's work queues and retry tiers, counted now (parked
    ones are going nowhere).

    The broker publishes no port. `rabbitmqctl list_queues` names every queue, but for a
    quorum queue it shows the counts the queue last reported, seconds old, which can say
    0 while a status waits in its tier. So the count is asked of each queue itself, from
    a sender's container (on the broker's network, as its own broker user).
    """
    [broker] = compose.containers("rabbitmq")
    listing = compose.docker_cli("exec", broker, "rabbitmqctl", "list_queues", "--quiet",
                                 "--no-table-headers", "name")
    names = [name for name in listing.split()
             if not name.endswith(".parked") and ".location-changes." not in f".{name}"]
    probe = compose.containers("sender")[0]
    return int(compose.docker_cli("exec", probe, "python", "-c", _DEPTHS, *names))


@dataclass
class ComposeBridge(BridgeAt):
    """The compose stack, over its published ports and, for what publishes none (the
    broker, the senders), `docker exec`: so `wait_quiet` sees the same things as on
    processes, and shows that nothing more will happen instead of waiting a guessed time."""

    compose: Compose = field(kw_only=True)

    def backlog(self) -> tuple[int, int]:
        handling = sum(in_flight(httpx.get(f"{url}/metrics", timeout=10).text)
                       for url in (self.gateway, self.oauth))
        for sender in self.compose.containers("sender"):
            text = metrics(self.compose, sender)
            # A replica that does not answer may be handling a message: not quiet yet.
            handling += in_flight(text) if text is not None else 1
        return queued(self.compose), handling


# --- the kill ----------------------------------------------------------------------------

@dataclass
class Kill:
    victim: str = ""
    sent_before: int = 0
    total: int = 0
    note: str = ""
    counters: dict[str, float] = field(default_factory=dict)  # parts sent, at the kill

    def successor(self, compose: Compose) -> str:
        """The surviving sender that sent after the kill: RabbitMQ's failover target."""
        grown = {name: parts_sent(compose, name) - count
                 for name, count in self.counters.items() if name != self.victim}
        return max(grown, key=lambda name: grown[name]) if any(grown.values()) else "-"


def mid_burst(bridge: ComposeBridge, case: Case, act: Callable[[], None]) -> tuple[int, str]:
    """Fire the burst in the background and `act` once some, not all, of it reached Cast;
    how much had when the act began, and what went wrong with the timing ("" if nothing)."""
    firing = threading.Thread(target=fire, args=(bridge, case), daemon=True)
    firing.start()
    deadline = time.monotonic() + 60
    sent_before, note = 0, ""
    while time.monotonic() < deadline:
        sent_before = _sent_of(bridge, case)
        if sent_before >= case.count // 4:
            act()
            break
        time.sleep(0.1)
    else:
        note = "the burst never started reaching Cast"
    firing.join(120)
    if sent_before >= case.count:
        note = "the action came after the whole burst was sent: not mid-burst"
    return sent_before, note


def kill_mid_burst(compose: Compose, bridge: ComposeBridge, case: Case,
                   say: Callable[[str], None]) -> Kill:
    """Kill the lane's owner in the middle of a burst."""
    senders = compose.containers("sender")
    before = {name: parts_sent(compose, name) for name in senders}
    kill = Kill(total=case.count)

    def kill_the_owner() -> None:
        after = {name: parts_sent(compose, name) for name in senders}
        kill.victim = max(senders, key=lambda name: after[name] - before[name])
        kill.counters = after
        compose.docker_cli("kill", kill.victim)
        say(f"docker kill {kill.victim} (owned the Cast lane) mid-burst")

    kill.sent_before, kill.note = mid_burst(bridge, case, kill_the_owner)
    return kill


def outage_mid_burst(compose: Compose, bridge: ComposeBridge, case: Case, *, service: str,
                     down_for: float, say: Callable[[str], None]) -> str:
    """Stop `service` (the broker, the database) for `down_for` seconds in the middle of a
    burst, then start it again; "" or what went wrong with the timing."""
    [container] = compose.containers(service)

    def outage() -> None:
        compose.docker_cli("stop", "--time", "10", container, timeout=120)
        say(f"docker stop {container} mid-burst; starting it again in {down_for:.0f} s")
        time.sleep(down_for)  # the outage itself: its length is the step's point
        compose.docker_cli("start", container, timeout=120)

    sent_before, note = mid_burst(bridge, case, outage)
    say(f"{sent_before}/{case.count} of the burst had reached Cast when {service} stopped")
    return note


def redeliver_refused(bridge: ComposeBridge, case: Case, say: Callable[[str], None]) -> None:
    """GHL retries a webhook it got no 200 for (the gateway answers 503 while RabbitMQ is
    away): so does the test, once the outage is over."""
    refused = [m for m in case.sent if m.answers and m.answers[-1] != 200]
    for message in refused:
        answer = bridge.redeliver(message.message_id)
        message.answers += [d["status_code"] for d in answer["deliveries"]]
    if refused:
        say(f"{len(refused)} webhook(s) answered 503 during the outage delivered again, as "
            "GHL retries them")


def healthy(compose: Compose, service: str, within: float = 180) -> None:
    """Wait for `service`'s own health check to pass again."""
    [container] = compose.containers(service)
    deadline = time.monotonic() + within
    while compose.docker_cli("inspect", "-f", "{{.State.Health.Status}}",
                             container).strip() != "healthy":
        if time.monotonic() > deadline:
            raise ComposeTestError(f"{service} not healthy {within:.0f} s after its start")
        time.sleep(1.0)


def readiness_back(compose: Compose, within: float) -> list[str]:
    """Every sender answers ready again (its consumers on the broker) within `within` s."""
    deadline = time.monotonic() + within
    waiting = compose.containers("sender")
    while waiting and time.monotonic() < deadline:
        waiting = [name for name in waiting if not _ready(compose, name)]
        time.sleep(1.0)
    return [f"{name} not ready {within:.0f} s after the broker came back" for name in waiting]


def _ready(compose: Compose, container: str) -> bool:
    try:
        compose.docker_cli("exec", container, "python", "/app/healthcheck.py", timeout=15)
    except subprocess.SubprocessError:
        return False
    return True


# Run inside the gateway's container, as its broker user: each thing it must not be able
# to do, and whether it could ("refused" is the expected answer for every one).
_GATEWAY_REACH = """
import asyncio, json, os, socket, urllib.error, urllib.request, aio_pika, aiormq
prefix = os.environ.get("QUEUE_PREFIX", "")
async def broker():
    found = {}
    connection = await aio_pika.connect(os.environ["RABBITMQ_URL"])
    async with connection:
        for what, act in {
            "consume sms.outbound": lambda ch: ch.declare_queue(prefix + "sms.outbound",
                passive=True),
            "publish to ghl.status": lambda ch: ch.default_exchange.publish(
                aio_pika.Message(b"{}"), routing_key=prefix + "ghl.status", mandatory=True),
            "declare a queue": lambda ch: ch.declare_queue(prefix + "gateway.own"),
        }.items():
            try:
                channel = await connection.channel(publisher_confirms=True,
                                                   on_return_raises=True)
                target = await act(channel)
                if what.startswith("consume"):
                    await target.consume(lambda message: None)
                found[what] = "allowed"
            except aiormq.exceptions.ChannelAccessRefused:
                found[what] = "refused"
            except Exception as exc:
                found[what] = type(exc).__name__
    return found
found = asyncio.run(broker())
try:  # every Cast key: only SENDER_API_KEY opens it, and the gateway has none
    urllib.request.urlopen("http://oauth:3003/internal/cast-keys", timeout=5)
    found["read the Cast keys from oauth"] = "allowed"
except urllib.error.HTTPError as answer:
    found["read the Cast keys from oauth"] = "refused" if answer.code == 401 else str(answer.code)
except OSError:
    found["read the Cast keys from oauth"] = "refused"
for what, host, port in (("reach mongo", "mongo", 27017),):
    try:
        socket.create_connection((host, port), timeout=3).close()
        found[what] = "allowed"
    except OSError:
        found[what] = "refused"
print(json.dumps(found))
"""


# What production requires, as placeholders: enough for `docker compose config` to render.
PRODUCTION_REQUIRED = ("BASE_URL", "GHL_CLIENT_ID", "GHL_CLIENT_SECRET", "GHL_APP_ID",
                       "TOKEN_ENCRYPTION_KEYS", "ADMIN_API_KEY", "SENDER_API_KEY",
                       "INBOUND_API_KEY", "CAST_API_KEY", "RABBITMQ_ADMIN_PASSWORD",
                       "RABBITMQ_GATEWAY_PASSWORD", "RABBITMQ_SENDER_PASSWORD",
                       "RABBITMQ_OAUTH_PASSWORD", "MONGO_ROOT_PASSWORD",
                       "MONGO_SENDER_PASSWORD", "MONGO_OAUTH_PASSWORD")


def production_config(compose: Compose, say: Callable[[str], None]) -> list[str]:
    """The production override as compose renders it: no guest credentials, no published
    broker or database port, MongoDB with authentication."""
    with tempfile.TemporaryDirectory() as scratch:
        env = Path(scratch) / "production.env"
        env.write_text("".join(f"{name}=placeholder-{name.lower()}-0123456789\n"
                               for name in PRODUCTION_REQUIRED)
                       + f"CASTGHL_ENV_FILE={env}\n")
        rendered = compose.docker_cli(
            "compose", "-p", "castghl-production-config", "-f",
            str(compose.root / "docker-compose.yaml"), "-f",
            str(compose.root / "deploy" / "compose.production.yaml"), "--env-file", str(env),
            "config", "--format", "json", timeout=60)
    services = json.loads(rendered)["services"]
    problems = [f"production: {name} publishes {services[name]['ports']}"
                for name in ("rabbitmq", "mongo") if services[name].get("ports")]
    if "guest" in rendered:
        problems.append("production: the rendered configuration names the guest user")
    if "MONGO_INITDB_ROOT_USERNAME" not in services["mongo"].get("environment", {}):
        problems.append("production: MongoDB runs without authentication")
    for name in ("sender", "oauth"):
        if "@mongo" not in services[name]["environment"].get("MONGO_URI", ""):
            problems.append(f"production: the {name} connects to MongoDB without a user")
    say("production override rendered: " + ("as required" if not problems else "NOT as required"))
    return problems


SLOW_CLIENTS = 200
SLOW_HEAD = b"POST /webhooks/ghl/provider-outbound HTTP/1.1\r\nhost: gateway\r\nx-slow: "


def slow_clients(bridge: ComposeBridge, say: Callable[[str], None]) -> tuple[Case, list[str]]:
    """SLOW_CLIENTS connections trickle a request head into the gateway while GHL's
    webhooks come in: those are answered, and every slow one is cut off (408, closed)."""
    case = Case(f"20 webhooks beside {SLOW_CLIENTS} slow clients",
                {"phone": PHONE, "message": "Beside slow clients"}, count=20)

    async def run() -> list[bytes]:
        stop = asyncio.Event()
        slow = [asyncio.create_task(trickle("127.0.0.1", PORTS["gateway"], SLOW_HEAD, stop))
                for _ in range(SLOW_CLIENTS)]
        try:
            await asyncio.to_thread(fire, bridge, case)
            return await asyncio.wait_for(asyncio.gather(*slow), 120)
        finally:
            stop.set()

    started = time.monotonic()
    answers = asyncio.run(run())
    say(f"{SLOW_CLIENTS} slow clients trickling request heads: all cut off within "
        f"{time.monotonic() - started:.1f} s; the 20 webhooks meanwhile answered "
        f"{sorted({a for m in case.sent for a in m.answers})}")
    if cut_off(answers, b"408"):
        return case, []
    return case, [f"slow clients not all answered 408 and closed: {sorted(set(answers))[:3]}"]


def least_privilege(compose: Compose, say: Callable[[str], None]) -> list[str]:
    """What the most exposed container may not do: the gateway's broker user consuming
    or publishing outside the intake, the gateway reading Cast keys from the oauth
    service, or reaching Mongo at all."""
    [gateway] = compose.containers("gateway")
    found = json.loads(compose.docker_cli("exec", gateway, "python", "-c", _GATEWAY_REACH,
                                          timeout=60))
    say("from the gateway's container: " + ", ".join(f"{k}: {v}" for k, v in found.items()))
    return [f"the gateway could {what} ({answer})" for what, answer in found.items()
            if answer != "refused"]


def _sent_of(bridge: ComposeBridge, case: Case) -> int:
    """Messages of the case (fired so far) that reached Cast."""
    sends = bridge.cast_sends_for([m.message_id for m in list(case.sent)])
    return sum(1 for found in sends.values() if found)


# --- the run -----------------------------------------------------------------------------

@dataclass
class Plan:
    senders: int = 3
    burst: int = 40
    kill_burst: int = 150
    outage_burst: int = 240
    keep: bool = False
    mongo_down: float = MONGO_DOWN_SECONDS


@contextmanager
def timed(say: Callable[[str], None], what: str, figures: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    say(f"== {what} ...")
    try:
        yield
    finally:
        figures[what] = time.monotonic() - started
        say(f"   {what}: {figures[what]:.1f} s")


def build(compose: Compose, log: Path) -> None:
    # One build at a time: parallel classic (non-BuildKit) builds race on the shared
    # `build` stage and may store it twice, after which a dependency layer can miss the
    # cache. Serial is also faster on two cores (the shared stage is built once).
    compose.run_logged(log, "build", serial=True)


def build_only(root: Path, say: Callable[[str], None]) -> bool:
    compose = Compose(root)
    preflight(compose, ports=False)
    log = root / "var" / "compose-build" / "build.log"
    figures: dict[str, float] = {}
    try:
        with timed(say, f"build images (output: {log})", figures):
            build(compose, log)
    except subprocess.CalledProcessError as exc:
        say(f"FAILED: `{' '.join(exc.cmd[1:4])} … {exc.cmd[-1]}` exited {exc.returncode}")
        return False
    return True


def run(root: Path, plan: Plan, say: Callable[[str], None]) -> bool:
    compose = Compose(root)
    preflight(compose)
    figures: dict[str, float] = {}
    problems: list[str] = []
    try:
        logs = root / "var" / "compose-test"
        say(f"(build, up and down output: {logs})")
        with timed(say, "build images", figures):
            build(compose, logs / "build.log")
        with timed(say, f"up with {plan.senders} senders, until all are healthy", figures):
            compose.run_logged(logs / "up.log", "up", "-d", "--scale", f"sender={plan.senders}",
                               "--wait", "--wait-timeout", "300")
        say(compose.run("ps", "--format", "table {{.Name}}\t{{.Status}}",
                        capture=True).stdout.rstrip())
        bridge = ComposeBridge(
            ghl_url=f"http://127.0.0.1:{PORTS['ghl-sim']}",
            cast_url=f"http://127.0.0.1:{PORTS['cast-sim']}",
            gateway_url=f"http://127.0.0.1:{PORTS['gateway']}",
            oauth_url=f"http://127.0.0.1:{PORTS['oauth']}",
            admin_api_key=sandbox_setting(root, "ADMIN_API_KEY"),
            inbound_api_key=sandbox_setting(root, "INBOUND_API_KEY"),
            gateway_for_simulators=f"http://gateway:{PORTS['gateway']}", compose=compose)
        with timed(say, "exercise the stack", figures):
            problems += exercise(compose, bridge, root, plan, say)
    except subprocess.CalledProcessError as exc:
        problems.append(f"`{' '.join(exc.cmd[1:4])} … {exc.cmd[-1]}` exited {exc.returncode}")
    except (httpx.HTTPError, ComposeTestError, StackError, TimeoutError) as exc:
        problems.append(f"{type(exc).__name__}: {exc}")  # with the containers' logs below
    finally:
        if problems:
            say(f"\n== logs (last 25 lines per container) of the failed run; all of them in "
                f"{logs / 'services.log'}")
            compose.run("logs", "--no-color", "--tail", "25", check=False)
            with contextlib.suppress(subprocess.CalledProcessError):
                compose.run_logged(logs / "services.log", "logs", "--no-color", "--timestamps")
        if plan.keep:
            say(f"--keep: the stack stays up (docker compose -p {PROJECT} --profile sandbox "
                "down -v)")
        else:
            # Data goes with the volumes anyway; no need to wait out a slow broker stop.
            with timed(say, "tear down (down -v)", figures):
                compose.run_logged(logs / "down.log", "down", "-v", "--remove-orphans",
                                   "--timeout", "10")
    say("\n" + "  ".join(f"{what}: {seconds:.0f} s" for what, seconds in figures.items()))
    for problem in problems:
        say(f"FAILED: {problem}")
    return not problems


def exercise(compose: Compose, bridge: ComposeBridge, root: Path, plan: Plan,
             say: Callable[[str], None]) -> list[str]:
    problems: list[str] = []
    published = sandbox_setting(root, "GHL_WEBHOOK_PUBLIC_KEY").strip()
    served = _ghl_key(bridge).strip()
    if published != served:
        return [f"the GHL simulator signs with a key that {SANDBOX_ENV} does not hold: "
                "update GHL_WEBHOOK_PUBLIC_KEY there from GET :9101/_sandbox/keys"]
    page = bridge.install()
    installed = sorted(set(re.findall(r"loc_[A-Za-z0-9_]+", page.text)))
    say(f"installed through the OAuth redirect flow ({len(page.history)} redirects): "
        f"{installed}")
    if not installed:
        problems.append("the install page names no location")

    cases = [
        Case(f"burst of {plan.burst}", {"phone": PHONE, "message": "Burst message"},
             count=plan.burst),
        scenarios.retried_webhook(),
        scenarios.long_text(),
        scenarios.us_number(),
        scenarios.carrier_rejected(),
    ]
    scenarios.script_carrier(bridge, cases)
    for case in cases:
        fire(bridge, case)
    say(f"fired {sum(len(c.sent) for c in cases)} signed webhooks "
        f"({sum(len(m.answers) for c in cases for m in c.sent)} deliveries); waiting until "
        "every status is in and the stack is quiet ...")
    settle(bridge, cases)

    crash = Case(f"burst of {plan.kill_burst}, lane owner killed",
                 {"phone": PHONE, "message": "Crash burst"}, count=plan.kill_burst)
    kill = kill_mid_burst(compose, bridge, crash, say)
    settle(bridge, [crash])
    say(f"the Cast lane failed over to {kill.successor(compose)}")
    cases.append(crash)
    if kill.note:
        problems.append(kill.note)

    problems += least_privilege(compose, say)
    problems += production_config(compose, say)

    beside_slow, slow_problems = slow_clients(bridge, say)
    problems += slow_problems
    settle(bridge, [beside_slow])
    cases.append(beside_slow)

    restart = Case(f"burst of {plan.outage_burst}, broker restarted",
                   {"phone": PHONE, "message": "Broker restart burst"}, count=plan.outage_burst)
    if note := outage_mid_burst(compose, bridge, restart, service="rabbitmq",
                                down_for=BROKER_DOWN_SECONDS, say=say):
        problems.append(f"broker restart: {note}")
    healthy(compose, "rabbitmq")
    started = time.monotonic()
    problems += readiness_back(compose, READY_AGAIN_SECONDS)
    say(f"every sender ready (consuming) again {time.monotonic() - started:.1f} s after "
        "the broker was healthy")
    redeliver_refused(bridge, restart, say)
    settle(bridge, [restart])
    cases.append(restart)

    stopped = Case(f"burst of {plan.outage_burst}, Mongo down {plan.mongo_down:.0f} s",
                   {"phone": PHONE, "message": "Mongo outage burst"}, count=plan.outage_burst)
    if note := outage_mid_burst(compose, bridge, stopped, service="mongo",
                                down_for=plan.mongo_down, say=say):
        problems.append(f"Mongo outage: {note}")
    # The bridge's recovery is timed from Mongo being back, not from its container start
    # (the emulator takes a while to answer on a loaded machine).
    healthy(compose, "mongo")
    say("Mongo healthy again; waiting for the burst to finish")
    settle(bridge, [stopped])
    cases.append(stopped)

    say("\n" + table([c.row() for c in cases]))
    fired = sum(len(c.sent) for c in cases)
    exactly_once = sum(1 for c in cases for m in c.sent
                       if m.cast_sends == c.expect_parts and len(m.statuses) == 1)
    say(f"\n{fired} messages: {exactly_once} reached Cast exactly as expected with exactly one "
        f"final GHL status; killed {kill.victim or '-'} after {kill.sent_before}/{kill.total}")
    for case in cases:
        problems += [f"{case.name}: {p}" for p in case.problems()[:10]]
    return problems


def _ghl_key(bridge: ComposeBridge) -> str:
    answer = httpx.get(f"{bridge.ghl}/_sandbox/keys", timeout=10)
    answer.raise_for_status()
    return str(answer.json()["ed25519_public_pem"])


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through run()'s `finally`: the stack comes down


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m castghl.sandbox.compose",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--kill-burst", type=int, default=150)
    parser.add_argument("--outage-burst", type=int, default=240)
    parser.add_argument("--mongo-down", type=float, default=MONGO_DOWN_SECONDS,
                        help="seconds Mongo stays stopped mid-burst (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    parser.add_argument("--build-only", action="store_true",
                        help="build the images and stop (the test builds them again from "
                             "the cache)")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the repository (holds docker-compose.yaml)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        if args.build_only:
            ok = build_only(args.root.resolve(), say)
        else:
            ok = run(args.root.resolve(), Plan(args.senders, args.burst, args.kill_burst,
                                               args.outage_burst, args.keep, args.mongo_down),
                     say)
    except ComposeTestError as exc:
        print(f"compose-test: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.build_only:
        print("images built" if ok else "IMAGE BUILD FAILED")
        sys.exit(0 if ok else 1)
    print("compose test passed" if ok else "COMPOSE TEST FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
