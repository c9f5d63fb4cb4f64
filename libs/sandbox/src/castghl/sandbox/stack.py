"""The whole bridge as real processes on this machine, wired to the simulators.

`Stack` starts the GHL and Cast simulators and the three services (any number of
senders) as subprocesses with the environment an operator would give them, waits for
each to be ready, installs a location through the real OAuth redirect flow, and stops
everything it started. The demo, the end-to-end tests and the benchmarks all run on it,
so they exercise exactly what operators run.

`Bridge` is the part that needs no processes: driving a running bridge (install, fire
webhooks, post replies) and observing what it did through the simulators' `/_sandbox`
endpoints: what Cast sent is found by each message's content (`cast_sends_for`), never
by the bridge's own keys. `Stack` is a Bridge whose URLs come from the processes it
started; `BridgeAt` is one already running elsewhere (`docker compose`, see
`castghl.sandbox.compose`), known by its URLs. Each says how its broker and services are
reached (`backlog`), so that `wait_quiet` can show that nothing more will happen.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from castghl.common.crypto import generate_key
from castghl.common.serve import STARTUP_FAILURE
from castghl.common.settings import BrokerSettings
from castghl.common.topology import Topology
from castghl.sandbox import infra, oracle
from castghl.sandbox.server import free_port

HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 45.0
# A service whose start-up failed is started again this many times, as the deployment's
# supervisor does (docker-compose.yaml: `restart: unless-stopped`). Seen once in CI:
# RabbitMQ 3.10 answered two senders registering on the single-active-consumer quorum
# queue at the same moment with INTERNAL_ERROR, closing one's connection mid-start-up.
START_RETRIES = 1
_PARTS_SENT = re.compile(r"^castghl_cast_parts_sent_total\s+([0-9.e+]+)$", re.M)
_IN_FLIGHT = re.compile(r"^castghl_in_flight\{[^}]*\}\s+([0-9.e+-]+)$", re.M)
# How often `wait_quiet` looks; two equal idle looks in a row mean quiet.
QUIET_POLL_SECONDS = 0.3
# Waits for an outcome return as soon as it is there; the bound only ends a run gone wrong,
# so it is generous enough for a slow, shared machine.
WAIT_TIMEOUT_SECONDS = 180.0


def parts_sent(metrics: str) -> float:
    """A sender's own count of parts Cast accepted, from its /metrics text: the replica
    whose count grows is the one owning the Cast lane."""
    match = _PARTS_SENT.search(metrics)
    return float(match[1]) if match else 0.0


def in_flight(metrics: str) -> int:
    """Messages a service is handling right now, over all its queues (/metrics text)."""
    return round(sum(float(value) for value in _IN_FLIGHT.findall(metrics)))


@dataclass(frozen=True)
class Activity:
    """One look at everything that could still change in a running stack."""

    queued: int  # messages waiting in a work queue or a retry tier (not parked ones)
    in_flight: int  # messages a service has taken and not yet settled
    cast_calls: int  # API calls the Cast simulator has answered
    ghl_calls: int  # API calls the GHL simulator has answered

    @property
    def idle(self) -> bool:
        return self.queued == 0 and self.in_flight == 0


class StackError(RuntimeError):
    """A process of the stack failed to start; the message quotes its last log lines."""


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    url: str | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        exe = str(Path(sys.executable).with_name(self.args[0]))
        self.popen = subprocess.Popen(  # noqa: S603 - our own console scripts
            [exe, *self.args[1:]], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        log.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, path: str = "/readyz", timeout: float = READY_TIMEOUT_SECONDS) -> None:
        assert self.popen is not None
        assert self.url is not None
        deadline = time.monotonic() + timeout
        retries = START_RETRIES
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                if self.popen.returncode == STARTUP_FAILURE and retries > 0:
                    retries -= 1
                    print(f"[stack] {self.name} failed its start-up; started again, as its "
                          f"supervisor would:\n{self.log_tail(5)}", file=sys.stderr)
                    self.start()
                    continue
                raise StackError(f"{self.name} exited with {self.popen.returncode}:\n"
                                 f"{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise StackError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, as an orchestrator would; SIGKILL if it does not drain in time."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to finish anything."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


class Bridge(abc.ABC):
    """A running bridge and its two simulators, driven and observed over HTTP only."""

    admin_api_key: str
    inbound_api_key: str

    @property
    @abc.abstractmethod
    def ghl(self) -> str:
        """The GHL simulator's URL, as this process reaches it."""

    @property
    @abc.abstractmethod
    def cast(self) -> str:
        """The Cast simulator's URL, as this process reaches it."""

    @property
    @abc.abstractmethod
    def gateway(self) -> str:
        """The gateway's URL, as this process reaches it."""

    @property
    @abc.abstractmethod
    def oauth(self) -> str:
        """The OAuth service's URL, as this process (the "browser") reaches it."""

    @property
    def inbound_webhook_url(self) -> str:
        """Where the Cast simulator posts replies: the gateway as the simulator reaches it."""
        return f"{self.gateway}/webhooks/cast/inbound"

    def configure_ghl(self, **knobs: Any) -> None:
        httpx.patch(f"{self.ghl}/_sandbox/config", json=knobs, timeout=5).raise_for_status()

    def configure_cast(self, **knobs: Any) -> None:
        httpx.patch(f"{self.cast}/_sandbox/config", json=knobs, timeout=5).raise_for_status()

    def install(self, *, agency: bool = False) -> httpx.Response:
        """The browser's path: /oauth/install → GHL's authorize page → our callback. GHL's
        knobs decide what the authorize page chooses (`location_id`, or an agency's)."""
        with httpx.Client(follow_redirects=True, timeout=60) as browser:
            page = browser.get(f"{self.oauth}/oauth/install",
                               params={"agency": "true"} if agency else None)
        page.raise_for_status()
        return page

    # --- observing a run through the simulators ------------------------------------------

    def send(self, times: int = 1, **webhook: Any) -> dict[str, Any]:
        """Have the GHL simulator create an outbound message and deliver its webhook."""
        answer = httpx.post(f"{self.ghl}/_sandbox/outbound", json={**webhook, "times": times},
                            timeout=30)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def redeliver(self, message_id: str, times: int = 1) -> dict[str, Any]:
        """Have the GHL simulator retry a webhook: the same bytes and signature."""
        answer = httpx.post(f"{self.ghl}/_sandbox/outbound/{message_id}/redeliver",
                            json={"times": times}, timeout=30)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def app_event(self, **fields: Any) -> dict[str, Any]:
        """Have the GHL simulator send an INSTALL / UNINSTALL to the app webhook."""
        answer = httpx.post(f"{self.ghl}/_sandbox/app-event", json=fields, timeout=30)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def cast_sent(self) -> list[dict[str, Any]]:
        """Every SMS Cast really sent (no replays, no refusals), oldest first, as Cast's
        log shows it: `message` (the text), `to`, `at` (epoch seconds), ..."""
        answer = httpx.get(f"{self.cast}/_sandbox/sent", timeout=30)
        answer.raise_for_status()
        return list(answer.json())

    def cast_sent_texts(self) -> list[str]:
        """The text of every SMS Cast really sent (no replays, no refusals), in order."""
        return [str(entry["message"]) for entry in self.cast_sent()]

    def cast_sends_for(self, message_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The SMS Cast really sent for each GHL message, found by content alone
        (`castghl.sandbox.oracle`): what the user wrote, as GHL holds it, in what Cast
        sent; never by the keys or ids the bridge puts on its calls. Give every message a
        text of its own."""
        ids = list(message_ids)
        answer = httpx.get(f"{self.ghl}/_sandbox/messages", params={"direction": "outbound"},
                           timeout=30)
        answer.raise_for_status()
        held = {m["id"]: m for m in answer.json()}
        texts = {message_id: oracle.written(held[message_id]) for message_id in ids}
        found = oracle.sends_by_text(list(texts.values()), self.cast_sent())
        return {message_id: found[text] for message_id, text in texts.items()}

    def statuses(self, message_id: str) -> list[dict[str, Any]]:
        """Every status GHL recorded for the message, oldest first."""
        answer = httpx.get(f"{self.ghl}/_sandbox/messages/{message_id}", timeout=10)
        answer.raise_for_status()
        return list(answer.json().get("statuses") or [])

    def wait_for_statuses(self, message_ids: list[str], timeout: float = WAIT_TIMEOUT_SECONDS
                          ) -> dict[str, list[dict[str, Any]]]:
        """Poll until each message has a status in GHL (or time runs out)."""
        deadline = time.monotonic() + timeout
        found: dict[str, list[dict[str, Any]]] = {}
        while True:
            for message_id in message_ids:
                if not found.get(message_id):
                    found[message_id] = self.statuses(message_id)
            if all(found.values()) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def reply(self, *, sender: str, message: str, to: str | None = None,
              message_id: str | None = None, times: int = 1) -> dict[str, Any]:
        """Have the Cast simulator post a recipient's reply to our gateway."""
        trigger: dict[str, Any] = {
            "url": self.inbound_webhook_url, "api_key": self.inbound_api_key,
            "from": sender, "message": message, "times": times}
        if to is not None:
            trigger["to"] = to
        if message_id is not None:
            trigger["message_id"] = message_id
        answer = httpx.post(f"{self.cast}/_sandbox/inbound", json=trigger, timeout=30)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def inbound_messages(self, alt_id: str | None = None) -> list[dict[str, Any]]:
        """Inbound messages GHL holds (optionally only those with this altId)."""
        found = httpx.get(f"{self.ghl}/_sandbox/messages", params={"direction": "inbound"},
                          timeout=10).json()
        return [m for m in found if alt_id is None or m.get("altId") == alt_id]

    def wait_for_inbound(self, alt_id: str, timeout: float = WAIT_TIMEOUT_SECONDS
                         ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not (found := self.inbound_messages(alt_id)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    def sms_dnd(self, phone_e164: str) -> str | None:
        """The SMS DND status GHL holds for the contacts with this phone (None: unset)."""
        found = httpx.get(f"{self.ghl}/_sandbox/contacts", timeout=10).json()
        settings = [((c.get("dndSettings") or {}).get("SMS") or {}).get("status")
                    for c in found if c.get("phone") == phone_e164]
        return settings[0] if len(settings) == 1 else None

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the OAuth service's admin API, with the stack's admin key."""
        return httpx.request(method, f"{self.oauth}/admin{path}", timeout=10,
                             headers={"Authorization": f"Bearer {self.admin_api_key}"},
                             **kwargs)

    # --- waiting until nothing more can happen -------------------------------------------

    @abc.abstractmethod
    def backlog(self) -> tuple[int, int]:
        """Messages waiting in a work queue or a retry tier (not parked ones), and messages
        the services have taken and not yet settled: seen from the broker and the services,
        which only the one who runs them knows how to reach."""

    def activity(self) -> Activity:
        queued, handling = self.backlog()
        calls = [len(httpx.get(f"{url}/_sandbox/calls", timeout=30).json())
                 for url in (self.cast, self.ghl)]
        return Activity(queued, handling, *calls)

    def wait_quiet(self, timeout: float = WAIT_TIMEOUT_SECONDS) -> Activity:
        """Return once nothing more can happen: no message waiting in any queue or retry
        tier, none being handled, and neither simulator called, across two looks in a row.

        This is how a test shows that *nothing more* happens (no late duplicate) without
        guessing how long a duplicate would take to show up. The deadline only bounds a
        stack that never settles, and is generous so a slow machine never reaches it.
        """
        deadline = time.monotonic() + timeout
        last: Activity | None = None
        while True:
            now = self.activity()
            if now.idle and now == last:
                return now
            if time.monotonic() > deadline:
                raise StackError(f"the stack did not settle within {timeout:.0f} s: {now}")
            last = now
            time.sleep(QUIET_POLL_SECONDS)


@dataclass
class Stack(Bridge):
    """Simulators + gateway + oauth + N senders, configured like a deployment."""

    rabbitmq_url: str
    mongo_uri: str
    workdir: Path
    senders: int = 1
    queue_prefix: str = field(default_factory=lambda: f"stack{secrets.token_hex(4)}.")
    sender_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)
    ghl_knobs: dict[str, Any] = field(default_factory=dict)
    cast_knobs: dict[str, Any] = field(default_factory=dict)

    admin_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sender_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    inbound_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    processes: dict[str, Process] = field(default_factory=dict)
    sender_base_env: dict[str, str] = field(default_factory=dict)
    # The console (in oauth) reads the first sender's operator API, so its port is known
    # before oauth starts.
    _first_sender_port: int = field(default_factory=free_port)

    def _process(self, name: str, args: list[str], env: Mapping[str, str],
                 port: int) -> Process:
        base = {k: v for k, v in os.environ.items()
                if k in {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE"}}
        process = Process(name, args, {**base, **env, "PORT": str(port), "HOST": HOST},
                          self.workdir / "logs" / f"{name}.log", url=f"http://{HOST}:{port}")
        self.processes[name] = process
        return process

    @property
    def ghl(self) -> str:
        return self._url("ghl-sim")

    @property
    def cast(self) -> str:
        return self._url("cast-sim")

    @property
    def gateway(self) -> str:
        return self._url("gateway")

    @property
    def oauth(self) -> str:
        return self._url("oauth")

    def _url(self, name: str) -> str:
        url = self.processes[name].url
        assert url is not None
        return url

    def _common_env(self) -> dict[str, str]:
        return {"RABBITMQ_URL": self.rabbitmq_url, "MONGO_URI": self.mongo_uri,
                "QUEUE_PREFIX": self.queue_prefix, "GHL_API_URL": self.ghl,
                "LOG_LEVEL": "INFO", **self.service_env}

    def start(self) -> None:
        for kind in ("ghl", "cast"):
            port = free_port()
            sim = self._process(f"{kind}-sim", ["castghl-sandbox", kind, "--port", str(port)],
                                {}, port)
            sim.start()
        for kind in ("ghl", "cast"):
            self.processes[f"{kind}-sim"].wait_ready("/_sandbox/config")
        gateway_port, oauth_port = free_port(), free_port()
        self.configure_ghl(webhook_url=f"http://{HOST}:{gateway_port}"
                                       "/webhooks/ghl/provider-outbound",
                           app_webhook_url=f"http://{HOST}:{gateway_port}/webhooks/ghl/app",
                           custom_page_url=f"http://{HOST}:{oauth_port}/ghl/settings",
                           **self.ghl_knobs)
        if self.cast_knobs:
            self.configure_cast(**self.cast_knobs)
        knobs = httpx.get(f"{self.ghl}/_sandbox/config", timeout=5).json()
        keys = httpx.get(f"{self.ghl}/_sandbox/keys", timeout=5).json()
        cast_knobs = httpx.get(f"{self.cast}/_sandbox/config", timeout=5).json()
        common = self._common_env()
        self._process("oauth", ["castghl-oauth"], {
            # Simulated accounts only: every location may use the default key, unless a
            # test says otherwise in service_env.
            "CAST_DEFAULT_KEY_FOR": "*",
            **common, "BASE_URL": f"http://{HOST}:{oauth_port}",
            "GHL_CLIENT_ID": knobs["client_id"], "GHL_CLIENT_SECRET": knobs["client_secret"],
            "GHL_APP_ID": knobs["app_id"], "GHL_MARKETPLACE_URL": self.ghl,
            # The Custom Page trusts what the simulated GHL encrypts, framed by it.
            "GHL_SSO_KEY": knobs["sso_key"], "GHL_FRAME_ANCESTORS": self.ghl,
            "TOKEN_ENCRYPTION_KEYS": generate_key(), "ADMIN_API_KEY": self.admin_api_key,
            "SENDER_API_KEY": self.sender_api_key,
            "SENDER_URL": f"http://{HOST}:{self._first_sender_port}",
            "GATEWAY_URL": f"http://{HOST}:{gateway_port}",
            "CAST_API_URL": self.cast, "CAST_API_KEY": cast_knobs["api_keys"][0],
        }, oauth_port).start()
        self._process("gateway", ["castghl-gateway"], {
            **common, "GHL_WEBHOOK_PUBLIC_KEY": keys["ed25519_public_pem"],
            "GHL_WEBHOOK_RSA_PUBLIC_KEY": keys["rsa_public_pem"],
            "INBOUND_API_KEY": self.inbound_api_key,
        }, gateway_port).start()
        self.sender_base_env = {
            **common, "CAST_API_URL": self.cast, "CAST_API_KEY": cast_knobs["api_keys"][0],
            "OAUTH_URL": f"http://{HOST}:{oauth_port}", "SENDER_API_KEY": self.sender_api_key,
            "ADMIN_API_KEY": self.admin_api_key,
            **self.sender_env,
        }
        for _ in range(self.senders):
            self.add_sender(wait=False)
        for process in self.processes.values():
            if process.name.endswith("-sim"):
                continue
            process.wait_ready()

    def add_sender(self, *, wait: bool = True, env: Mapping[str, str] | None = None
                   ) -> Process:
        """Start one more sender replica (optionally with different settings)."""
        index = sum(1 for name in self.processes if name.startswith("sender-")) + 1
        port = self._first_sender_port if index == 1 else free_port()
        sender = self._process(f"sender-{index}", ["castghl-sender"],
                               {**self.sender_base_env, **(env or {})}, port)
        sender.start()
        if wait:
            sender.wait_ready()
        return sender

    @property
    def sender_processes(self) -> list[Process]:
        return [p for name, p in self.processes.items() if name.startswith("sender-")]

    def lane_owner(self) -> Process:
        """The running sender that has sent the most through Cast (the active consumer)."""
        def sent(sender: Process) -> float:
            assert sender.url is not None
            return parts_sent(httpx.get(f"{sender.url}/metrics", timeout=10).text)

        return max((p for p in self.sender_processes if p.running), key=sent)

    def backlog(self) -> tuple[int, int]:
        names = [name for name in self.topology().queue_names()
                 if not name.endswith(".parked")]
        queued = sum(infra.queue_depths(self.rabbitmq_url, names).values())
        handling = 0
        for process in self.processes.values():
            if process.url and process.running and not process.name.endswith("-sim"):
                handling += in_flight(httpx.get(f"{process.url}/metrics", timeout=10).text)
        return queued, handling

    def stop_senders(self) -> None:
        for sender in self.sender_processes:
            sender.stop()

    def stop(self, *, delete_queues: bool = True) -> None:
        """Stop every process (SIGTERM, drained), then remove the stack's queues."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        if delete_queues:
            infra.delete_queues(self.rabbitmq_url, self.topology().queue_names())

    def topology(self) -> Topology:
        """The queues the services declared: built from the settings they were given."""
        env = {**self._common_env(), **self.sender_env}
        fields = {k.lower(): v for k, v in env.items()
                  if k.lower() in BrokerSettings.model_fields}
        return BrokerSettings.model_validate(fields).topology()

    @contextlib.contextmanager
    def running(self) -> Iterator[Stack]:
        try:
            self.start()
            yield self
        finally:
            self.stop()


@dataclass
class BridgeAt(Bridge):
    """A bridge running elsewhere (containers), known by its URLs and its two API keys.

    Its `backlog` is for a subclass that knows how to reach the broker and the services
    there (`castghl.sandbox.compose.ComposeBridge`).

    `gateway_for_simulators` is the gateway as the simulators reach it, when that differs
    from how this process does (a compose service name rather than a published port).
    """

    ghl_url: str
    cast_url: str
    gateway_url: str
    oauth_url: str
    admin_api_key: str
    inbound_api_key: str
    gateway_for_simulators: str | None = None

    @property
    def ghl(self) -> str:
        return self.ghl_url

    @property
    def cast(self) -> str:
        return self.cast_url

    @property
    def gateway(self) -> str:
        return self.gateway_url

    @property
    def oauth(self) -> str:
        return self.oauth_url

    @property
    def inbound_webhook_url(self) -> str:
        return f"{self.gateway_for_simulators or self.gateway}/webhooks/cast/inbound"
