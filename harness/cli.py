"""The ``comfy-compat`` command: one argparse subcommand per task (``serve`` runs a reference endpoint).

A subcommand is a ``(configure, run)`` pair in ``SUBCOMMANDS``; ``run`` gets the parsed arguments and
returns the exit status. Harness errors print as one line without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence

from harness.errors import HarnessError

__all__ = ["SUBCOMMANDS", "main"]


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="stock", help="stock, custom or a profile YAML file (default: stock)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8189, help="port to bind (default: 8189; 0 picks a free one)")


def _serve(args: argparse.Namespace) -> int:
    from harness.reference.profile import load_profile
    from harness.reference.server import running_server  # only this subcommand pays for aiohttp

    profile = load_profile(args.profile)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running_server(profile, args.host, args.port) as server:
            print(f"comfy-compat: reference endpoint '{profile.name}' listening on {server.url} (Ctrl-C stops)", flush=True)
            await stop.wait()
        print("comfy-compat: reference endpoint stopped", flush=True)

    asyncio.run(serve())
    return 0


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "serve": ("run the embedded reference endpoint (a simulated ComfyUI 0.3.64)", _configure_serve, _serve),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comfy-compat", description="Replay ComfyUI workflows against endpoints.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, configure, run) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        configure(sub)
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except HarnessError as exc:
        print(f"comfy-compat: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
