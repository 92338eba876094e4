"""The ``typed-ss`` command (also ``python -m typed_ss``).

    typed-ss gen-client myapp.main:ss --out web/generated [--lang ts|js|py] [--check] [--app-dir DIR]
    typed-ss schema myapp.main:ss
    typed-ss asyncapi myapp.main:ss [--out asyncapi.json] [--app-dir DIR]
    typed-ss run myapp.main:app [--host 127.0.0.1] [--port 8080] [--server myapp.main:ss]
    typed-ss serve myapp.main:ss [--host 127.0.0.1] [--port 8080] [--path /socket] [--app myapp.main:app]

``APP`` is an import string, ``module:attribute`` (the attribute may be dotted), naming a
:class:`typed_ss.Server` (or its :class:`typed_ss.Contract`). ``--app-dir`` (default: the current
directory) is put first on ``sys.path`` before the import.

Exit codes: 0 done (or up to date), 1 ``--check`` found stale files, 2 the app could not be imported
or its contract cannot be generated (one line on stderr), or a usage error.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from typed_ss import __version__
from typed_ss.contract import Contract

__all__ = ["ImportFromStringError", "import_from_string", "load_contract", "main"]


class ImportFromStringError(Exception):
    """An import string that does not lead to an object; the message is one line for the user."""


def import_from_string(import_string: str) -> Any:
    """The object named by ``module:attribute`` (the attribute may be dotted: ``app:container.ss``)."""
    module_name, _, attribute = import_string.partition(":")
    if not module_name or not attribute:
        raise ImportFromStringError(
            f'Import string "{import_string}" must be in format "<module>:<attribute>".'
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (
            exc.name is not None
            and module_name.startswith(exc.name)
            and module_name[len(exc.name) :][:1] in ("", ".")
        ):
            raise ImportFromStringError(f'Could not import module "{module_name}".') from exc
        raise ImportFromStringError(f'Importing "{module_name}" failed: {_one_line(exc)}') from exc
    except Exception as exc:
        raise ImportFromStringError(f'Importing "{module_name}" failed: {_one_line(exc)}') from exc
    value: Any = module
    try:
        for name in attribute.split("."):
            value = getattr(value, name)
    except AttributeError:
        raise ImportFromStringError(f'Attribute "{attribute}" not found in module "{module_name}".') from None
    return value


def load_contract(import_string: str, app_dir: str) -> Contract:
    """The contract of the server named by ``import_string``, imported with ``app_dir`` first on sys.path."""
    from typed_ss.server import Server

    sys.path.insert(0, str(Path(app_dir).resolve()))
    target = import_from_string(import_string)
    if isinstance(target, Contract):
        return target
    if isinstance(target, Server):
        try:
            return target.contract
        except Exception as exc:
            raise ImportFromStringError(
                f'The contract of "{import_string}" failed: {_one_line(exc)}'
            ) from exc
    raise ImportFromStringError(
        f'"{import_string}" is a {type(target).__qualname__}, not a typed_ss.Server: '
        "point at the Server (for example myapp.main:ss), not at the ASGI app around it."
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


_APP_DIR = click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Look for the app's module in this directory (put first on sys.path).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="typed-ss")
def main() -> None:
    """typed-ss: event-based WebSockets for Python."""


@main.command("gen-client")
@click.argument("app")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the client to (created if needed).",
)
@click.option(
    "--lang",
    type=click.Choice(["ts", "js", "py"]),
    default="ts",
    show_default=True,
    help="ts: one TypeScript module (ss.client.ts); js: an ES module (ss.client.js) with ss.client.d.ts; "
    "py: a Python module (ss_client.py) for typed_ss.client.",
)
@click.option("--check", is_flag=True, help="Write nothing; print a diff and exit 1 if the files are stale.")
@_APP_DIR
def gen_client(app: str, out_dir: Path, lang: str, check: bool, app_dir: str) -> None:
    """Generate a typed client for the server APP (module:attribute, e.g. myapp.main:ss).

    Writes ss.client.ts (or ss.client.js and ss.client.d.ts with --lang js) and, next to it, the
    runtime it calls (ss-typed.js, ss-typed.mjs, ss-typed.d.ts, ss-typed.d.mts) and the plain client
    that runtime wraps (ss.js, ss.mjs, ss.d.ts, ss.d.mts). With --lang py: ss_client.py alone, which
    runs on typed_ss.client. Files whose content would not change are not rewritten.
    """
    from typed_ss.codegen import CodegenError, files, generate

    try:
        contract = load_contract(app, app_dir)
        generated = generate(contract, "py" if lang == "py" else "js" if lang == "js" else "ts", app)
    except (ImportFromStringError, CodegenError) as exc:
        _fail(str(exc))
    if check:
        diffs = files.check(out_dir, generated)
        if diffs:
            for diff in diffs:
                click.echo(diff, nl=False)
            click.echo(
                f"{len(diffs)} generated file(s) in {out_dir} are out of date; run: "
                f"typed-ss gen-client {app} --out {out_dir} --lang {lang}",
                err=True,
            )
            sys.exit(1)
        click.echo(f"{out_dir}: up to date")
        return
    changed = files.write(out_dir, generated)
    for path in changed:
        click.echo(f"wrote {path}")
    if not changed:
        click.echo(f"{out_dir}: up to date")


@main.command("schema")
@click.argument("app")
@_APP_DIR
def schema(app: str, app_dir: str) -> None:
    """Print the JSON Schema of the server APP's contract (module:attribute)."""
    try:
        contract = load_contract(app, app_dir)
        document = contract.json_schema()
    except ImportFromStringError as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f'The JSON Schema of "{app}" failed: {_one_line(exc)}')
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@main.command("asyncapi")
@click.argument("app")
@click.option(
    "--out",
    "out_file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the document to this file (JSON; directories created if needed) instead of stdout.",
)
@_APP_DIR
def asyncapi(app: str, out_file: Path | None, app_dir: str) -> None:
    """Write the AsyncAPI 3.0 document of the server APP's contract (module:attribute), as JSON.

    The document describes the server: the events clients send are its receive operations, the
    events it sends its send operations, a call's answers the operation's reply. A file whose
    content would not change is not rewritten.
    """
    from typed_ss.asyncapi import asyncapi_document, render
    from typed_ss.codegen import files

    try:
        contract = load_contract(app, app_dir)
        text = render(asyncapi_document(contract, title=app))
    except ImportFromStringError as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f'The AsyncAPI document of "{app}" failed: {_one_line(exc)}')
    if out_file is None:
        click.echo(text, nl=False)
        return
    # Atomic, and an unchanged file is not touched (so file watchers stay quiet).
    if files.write(out_file.parent, [files.GeneratedFile(out_file.name, text)]):
        click.echo(f"wrote {out_file}")
    else:
        click.echo(f"{out_file}: up to date")


@main.command("run")
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--server",
    "server_name",
    default=None,
    help="The typed_ss.Server (module:attribute) when APP is an app around it and its module has "
    "more than one Server.",
)
@_APP_DIR
def run(app: str, host: str, port: int, server_name: str | None, app_dir: str) -> None:
    """Serve APP (module:attribute: a Starlette or FastAPI app, or the typed_ss.Server itself) with
    uvicorn and typed-ss's recommended settings (docs/running.md)."""
    from typed_ss.server import Server
    from typed_ss.serving import run as serve

    sys.path.insert(0, str(Path(app_dir).resolve()))
    try:
        target = import_from_string(app)
        server = import_from_string(server_name) if server_name else _server_of(app, target)
    except ImportFromStringError as exc:
        _fail(str(exc))
    if not isinstance(server, Server):
        _fail(f'"{server_name}" is a {type(server).__qualname__}, not a typed_ss.Server')
    serve(target, server, host=host, port=port)


@main.command("serve")
@click.argument("server_name", metavar="SERVER")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free one).")
@click.option("--path", default="/socket", show_default=True, help="The WebSocket's path.")
@click.option(
    "--app",
    "app_name",
    default=None,
    help="An ASGI app (module:attribute) for every other request, its lifespan run with the server.",
)
@_APP_DIR
def serve_native(
    server_name: str, host: str, port: int, path: str, app_name: str | None, app_dir: str
) -> None:
    """Serve SERVER (module:attribute, the typed_ss.Server) on the native transport, without ASGI
    (docs/running.md); SIGTERM or Ctrl+C closes every socket with 1012 and stops."""
    from typed_ss.native import serve
    from typed_ss.server import Server

    sys.path.insert(0, str(Path(app_dir).resolve()))
    try:
        server = import_from_string(server_name)
        app = import_from_string(app_name) if app_name else None
    except ImportFromStringError as exc:
        _fail(str(exc))
    if not isinstance(server, Server):
        _fail(f'"{server_name}" is a {type(server).__qualname__}, not a typed_ss.Server')
    serve(server, host=host, port=port, path=path, app=app)


def _server_of(import_string: str, target: object) -> object:
    """The Server to take limits from: ``target`` itself, or the one Server in its module."""
    from typed_ss.server import Server

    if isinstance(target, Server):
        return target
    module = sys.modules[import_string.partition(":")[0]]
    servers = {id(value): value for value in vars(module).values() if isinstance(value, Server)}
    if len(servers) != 1:
        raise ImportFromStringError(
            f'found {len(servers)} typed_ss.Server objects in "{module.__name__}": name the one to '
            "serve with --server module:attribute"
        )
    return next(iter(servers.values()))
