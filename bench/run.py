"""`make bench`: the gateway and pipeline benchmarks, one report, figures as JSON.

Prints figures and ratios only: timings depend on the machine, so nothing here passes or
fails; the exit status is non-zero only if something crashed. The JSON copy goes to
var/bench/latest.json for the README.

    uv run python bench/run.py                  # both (about 2.7 minutes)
    uv run python bench/run.py --only gateway   # or --only pipeline, lookups, cost
    uv run python bench/run.py --only gateway --breakdown   # + where the CPU goes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script (`python bench/run.py`): make the `bench` package importable, and the
# load generator and baseline subprocesses (`python -m bench.…`) find it from the root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import breakdown, cost, gateway, lookups, pipeline, rabbit, report
from castghl.sandbox import infra


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _emulator_pid(data_dir: Path) -> dict[str, int]:
    """The Mongo emulator's pid (from its pid file), so its RSS is reported too."""
    try:
        return {"mongo emulator (nx-27017)": int((data_dir / "nx.pid").read_text().strip())}
    except (OSError, ValueError):
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the gateway and the pipeline.")
    parser.add_argument("--only", choices=["gateway", "pipeline", "lookups", "cost"])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="gateway: measured seconds per endpoint (default 10)")
    parser.add_argument("--messages", type=int, default=pipeline.MESSAGES,
                        help=f"pipeline and cost: burst size (default {pipeline.MESSAGES:,})")
    parser.add_argument("--breakdown", action="store_true",
                        help="also price each gateway stage with patched gateways (~90 s)")
    args = parser.parse_args()
    # Progress goes to stderr; keep the report on stdout in step with it.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    started = time.monotonic()
    figures: dict[str, Any] = {}
    try:
        _run(args, figures)
    except rabbit.RabbitUnavailable as exc:
        print(f"\n[bench] RabbitMQ did not answer: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        # Whatever was measured is kept, even if a later part crashed.
        path = report.write_json(figures)
        print(f"\nTotal {time.monotonic() - started:.0f} s. Figures written to "
              f"{os.path.relpath(path)}.")


def _run(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="castghl-bench-") as tmp:
        workdir = Path(tmp)
        broker = infra.rabbitmq()
        mongo: infra.Infra | None = None
        try:
            rabbitmq = f"{rabbit.server_version(broker.url)} ({broker.description})"
            if args.only not in ("gateway",):
                mongo = infra.mongo(workdir / "mongo")
            figures["machine"] = report.machine(rabbitmq,
                                                mongo.description if mongo else "not used")
            figures["machine"]["busy before the run"] = report.background_load()
            figures["machine"]["reference work"] = (
                f"{report.reference_work_ms():.0f} ms of CPU (bench/report.py; lower is "
                "faster)")
            print(report.heading("Machine"))
            print(report.pairs(list(figures["machine"].items())))
            if args.only in (None, "gateway"):
                print("\n[gateway] running: baseline, then gateway …", file=sys.stderr)
                at = _now()
                measured = gateway.run(broker.url, workdir / "gateway", duration=args.duration)
                figures["gateway"] = {"at": at, "rabbitmq": broker.description, **measured}
                print(gateway.render(figures["gateway"]))
            if args.breakdown:
                print("\n[breakdown] patched gateways, one step at a time …", file=sys.stderr)
                at = _now()
                steps = breakdown.run(broker.url, workdir / "breakdown")
                figures["gateway_breakdown"] = {"at": at, "steps": steps}
                print(breakdown.render(figures["gateway_breakdown"]["steps"]))
            if mongo is not None and args.only in (None, "lookups"):
                print("\n[lookups] the OAuth service's internal API …", file=sys.stderr)
                at = _now()
                measured = lookups.run(broker.url, mongo.url, workdir / "lookups")
                figures["lookups"] = {"at": at, **measured}
                print(lookups.render(figures["lookups"]))
            if mongo is not None and args.only in (None, "pipeline"):
                at = _now()
                measured = pipeline.run(broker.url, mongo, workdir / "pipeline",
                                        messages=args.messages,
                                        extra_pids=_emulator_pid(workdir / "mongo"))
                figures["pipeline"] = {"at": at, "rabbitmq": broker.description,
                                       "mongo": mongo.description, **measured}
                print(pipeline.render(figures["pipeline"]))
            if mongo is not None and args.only in (None, "cost"):
                at = _now()
                measured = cost.run(broker.url, mongo, workdir / "cost", messages=args.messages,
                                    extra_pids=_emulator_pid(workdir / "mongo"))
                figures["cost"] = {"at": at, "rabbitmq": broker.description,
                                   "mongo": mongo.description, **measured}
                print(cost.render(figures["cost"]))
        finally:
            if mongo is not None:
                mongo.stop()
            broker.stop()


if __name__ == "__main__":
    main()
