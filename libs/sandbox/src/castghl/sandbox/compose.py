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

The cases, firing, waiting and the table are `castghl.sandbox.scenarios`, which the demo
plays on processes; driving and observing go through `ComposeBridge`, a
`castghl.sandbox.stack.Bridge` like the one the end-to-end tests use. It needs a Docker
API (DOCKER_HOST or the default socket) and the Compose v2 plugin; it says so and exits 2
when either is missing. Images follow PYTHON_IMAGE / RABBITMQ_IMAGE / MONGO_IMAGE when set.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
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
from castghl.sandbox.stack import BridgeAt, in_flight
from castghl.sandbox.stack import parts_sent as parts_sent_in

PROJECT = "castghl-compose-test"
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


def preflight(compose: Compose) -> None:
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
    busy = [f"{name} :{port}" for name, port in PORTS.items() if _port_taken(port)]
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


def queued(compose: Compose) -> int:
    """Messages waiting in the broker's work queues and retry tiers, counted now (parked
    ones are going nowhere).

    The broker publishes no port. `rabbitmqctl list_queues` names every queue, but for a
    quorum queue it shows the counts the queue last reported, seconds old, which can say
    0 while a status waits in its tier. So the count is asked of each queue itself, as on
    processes (`infra.queue_depths`), from inside the compose network: the simulators'
    image has the client.
    """
    [broker] = compose.containers("rabbitmq")
    listing = compose.docker_cli("exec", broker, "rabbitmqctl", "list_queues", "--quiet",
                                 "--no-table-headers", "name")
    names = [name for name in listing.split() if not name.endswith(".parked")]
    [probe] = compose.containers("cast-sim")
    script = ("import sys;from castghl.sandbox import infra;"
              "print(sum(infra.queue_depths(sys.argv[1],sys.argv[2:]).values()))")
    url = sandbox_setting(compose.root, "RABBITMQ_URL")
    return int(compose.docker_cli("exec", probe, "python", "-c", script, url, *names))


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


def kill_mid_burst(compose: Compose, bridge: ComposeBridge, case: Case,
                   say: Callable[[str], None]) -> Kill:
    """Fire the burst in the background; kill the lane's owner once some, not all, went."""
    senders = compose.containers("sender")
    before = {name: parts_sent(compose, name) for name in senders}
    firing = threading.Thread(target=fire, args=(bridge, case), daemon=True)
    firing.start()
    kill = Kill(total=case.count)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sent = _sent_of(bridge, case)
        if sent >= case.count // 4:
            after = {name: parts_sent(compose, name) for name in senders}
            kill.victim = max(senders, key=lambda name: after[name] - before[name])
            kill.counters = after
            kill.sent_before = _sent_of(bridge, case)
            compose.docker_cli("kill", kill.victim)
            say(f"docker kill {kill.victim} (owned the Cast lane) after "
                f"{kill.sent_before}/{case.count} of the burst reached Cast")
            break
        time.sleep(0.1)
    else:
        kill.note = "the burst never started reaching Cast"
    firing.join(120)
    if kill.sent_before >= case.count:
        kill.note = "the kill came after the whole burst was sent: not a mid-burst kill"
    return kill


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
    keep: bool = False


@contextmanager
def timed(say: Callable[[str], None], what: str, figures: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    say(f"== {what} ...")
    try:
        yield
    finally:
        figures[what] = time.monotonic() - started
        say(f"   {what}: {figures[what]:.1f} s")


def run(root: Path, plan: Plan, say: Callable[[str], None]) -> bool:
    compose = Compose(root)
    preflight(compose)
    figures: dict[str, float] = {}
    problems: list[str] = []
    try:
        logs = root / "var" / "compose-test"
        say(f"(build, up and down output: {logs})")
        # One build at a time: parallel classic (non-BuildKit) builds race on the shared
        # `build` stage and may store it twice, after which a dependency layer can miss
        # the cache. Serial is also faster on two cores (the shared stage is built once).
        with timed(say, "build images", figures):
            compose.run_logged(logs / "build.log", "build", serial=True)
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
    finally:
        if problems:
            say("\n== logs (last 25 lines per container) of the failed run")
            compose.run("logs", "--no-color", "--tail", "25", check=False)
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
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    parser.add_argument("--root", type=Path, default=Path.cwd(),
                        help="the repository (holds docker-compose.yaml)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        ok = run(args.root.resolve(), Plan(args.senders, args.burst, args.kill_burst, args.keep),
                 say)
    except ComposeTestError as exc:
        print(f"compose-test: {exc}", file=sys.stderr)
        sys.exit(2)
    print("compose test passed" if ok else "COMPOSE TEST FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
