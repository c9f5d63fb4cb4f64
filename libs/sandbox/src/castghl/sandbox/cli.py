"""`castghl-sandbox ghl|cast --port N [--set knob=value ...]`: run one simulator."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError

from castghl.sandbox import server
from castghl.sandbox.cast.app import CastKnobs, create_cast_app
from castghl.sandbox.ghl.app import GhlKnobs, create_ghl_app

DEFAULT_PORTS = {"ghl": 9101, "cast": 9102}


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    knobs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"castghl-sandbox: --set expects knob=value, got {pair!r}")
        try:
            knobs[name] = json.loads(raw)
        except ValueError:
            knobs[name] = raw  # plain strings need no JSON quotes on the command line
    return knobs


def build(kind: str, knobs: dict[str, Any]) -> FastAPI:
    try:
        if kind == "ghl":
            return create_ghl_app(GhlKnobs(**knobs))
        return create_cast_app(CastKnobs(**knobs))
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"castghl-sandbox {kind}: bad knob: {bad}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="castghl-sandbox",
        description="Local simulators of the GoHighLevel and Cast.ph APIs.",
    )
    parser.add_argument("kind", choices=sorted(DEFAULT_PORTS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="KNOB=VALUE", help="initial knob (JSON or plain string)")
    args = parser.parse_args(argv)
    app = build(args.kind, _parse_sets(args.sets))
    print(f"castghl-sandbox {args.kind}: listening on http://{args.host}:"
          f"{args.port or DEFAULT_PORTS[args.kind]}", file=sys.stderr, flush=True)
    server.run(app, args.host, args.port or DEFAULT_PORTS[args.kind])


if __name__ == "__main__":
    main()
