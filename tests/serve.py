"""Serve an app under uvicorn, with typed-ss's recommended settings, on a free loopback port.

    python -m tests.serve MODULE:APP [--server MODULE:SERVER] [--set NAME=VALUE ...] [--port N]

Prints ``PORT <n>`` on the first line of stdout once the port is bound, so that a test (Python or
Node) can start a real server in another process and connect to it. ``--set`` overrides a uvicorn
setting (numbers are parsed as floats when they have a dot, else as ints). With
``TYPED_SS_TRANSPORT=native`` (see tests/support.py) and without ``--set`` or ``--uvicorn``, the server
is served by the native transport instead, the rest of the app beside it, stopped by SIGTERM as
``typed_ss.serve`` is.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging.config
import signal
import sys
from typing import Any

import uvicorn

from tests.support import TRANSPORT, free_socket, native_path, natively_servable
from typed_ss import CloseCode, NativeServer, Server, uvicorn_settings
from typed_ss.native.server import native_log_config


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _value(text: str) -> object:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app")
    parser.add_argument("--server", help="the typed_ss.Server (default: the module's `ss`)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) lets the OS pick a free port")
    parser.add_argument(
        "--uvicorn", action="store_true", help="serve with uvicorn whatever TYPED_SS_TRANSPORT says"
    )
    args = parser.parse_args()
    app = _load(args.app)
    server = _load(args.server or args.app.partition(":")[0] + ":ss")
    assert isinstance(server, Server)
    path = native_path(app, server)
    if TRANSPORT == "native" and not args.uvicorn and not args.set and path is not None:
        beside = None if natively_servable(app, server) else app
        asyncio.run(_serve_natively(server, args.port, path or None, beside))
        return
    settings: dict[str, Any] = {**uvicorn_settings(server), "log_level": "info"}
    for item in args.set:
        name, _, value = item.partition("=")
        settings[name] = _value(value)
    sock = free_socket(args.port)
    sock.listen(2048)  # connections made as soon as the port is printed wait in the backlog
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, **settings)).run(sockets=[sock])
    sys.stdout.flush()


async def _serve_natively(server: Server, port: int, path: str | None, app: Any) -> None:
    logging.config.dictConfig(native_log_config())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with NativeServer(server, port=port, path=path, app=app, backlog=2048) as native:
        print(f"PORT {native.port}", flush=True)
        await stop.wait()
        await native.stop(CloseCode.SERVICE_RESTART)


if __name__ == "__main__":
    main()
