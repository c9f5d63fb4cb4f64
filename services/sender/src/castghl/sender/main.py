"""`castghl-sender`: run the workers (health on PORT), or operate the parking queues.

    castghl-sender                        run (the default)
    castghl-sender parked                 count parked messages per queue
    castghl-sender replay QUEUE [--limit N]
                                          move parked messages of QUEUE (outbound,
                                          status, inbound, lifecycle) back for another try
"""

from __future__ import annotations

import argparse
import asyncio

from castghl.common.logging import configure_logging
from castghl.common.parking import count_parked, replay
from castghl.common.serve import serve
from castghl.common.settings import BrokerSettings, announce, load_settings
from castghl.sender.app import SERVICE, create_app
from castghl.sender.settings import SenderSettings


def _operate(args: argparse.Namespace) -> None:
    # Only the broker settings: an operator replaying parked replies needs no Cast key.
    settings = load_settings(BrokerSettings, SERVICE)
    topology = settings.topology()
    queues = {"outbound": topology.outbound, "status": topology.status,
              "inbound": topology.inbound, "lifecycle": topology.lifecycle}
    url = str(settings.rabbitmq_url)
    if args.command == "parked":
        for work in queues.values():
            print(f"{work.parked.name}\t{asyncio.run(count_parked(url, work))}")
        return
    done = asyncio.run(replay(url, queues[args.queue], args.limit))
    print(f"replayed {done.moved} message(s) from {done.queue}; {done.left} left")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=SERVICE, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("parked", help="count parked messages per queue")
    again = commands.add_parser("replay", help="move parked messages back to their queue")
    again.add_argument("queue", choices=["outbound", "status", "inbound", "lifecycle"])
    again.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command is not None:
        _operate(args)
        return
    settings = load_settings(SenderSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level)
    announce(settings)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
