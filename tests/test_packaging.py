"""The two artefacts, installed as a user installs them and used: the Python wheel (and the sdist it is
built from) and the npm package of the browser client; and the route that serves that client from an
installed typed-ss, for users who have no npm.

The slow tests build with ``make dist`` into their own directory, install the wheel into a fresh venv
outside the repository (``uv pip install`` under constraints.txt, so the versions are the tested ones),
pack clients/js with ``npm pack`` and install the tarball into a scratch npm project, and run everything
from a directory outside the repository, so nothing can be found in the checkout by accident.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

import typed_ss
from tests.installed import EXTRAS, Dist, NpmProject, Venv, clean_env, run
from tests.support import free_port
from typed_ss.errors import ConfigurationError
from typed_ss.static import CLIENT_FILES, client_files, client_path, client_route

ROOT = Path(__file__).resolve().parents[1]
JS_CLIENT = ROOT / "clients" / "js"
TSC = JS_CLIENT / "node_modules" / ".bin" / "tsc"
VERSION = typed_ss.__version__

# What `npm pack` must put in the tarball, and nothing else (npm adds package.json and LICENSE itself).
NPM_FILES = frozenset({"package.json", "README.md", "LICENSE", *CLIENT_FILES})


# --- One version, and the served client: quick ----------------------------------------------------


def test_the_npm_package_has_the_python_package_s_version() -> None:
    package = json.loads((JS_CLIENT / "package.json").read_text())
    assert package["version"] == VERSION, "clients/js/package.json's version must be typed_ss.__version__"


def test_the_version_is_written_once_in_typed_ss_init() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"] == {"path": "typed_ss/__init__.py"}
    # hatch's regex source takes the first `__version__ = "..."`: there must be exactly one.
    init = (ROOT / "typed_ss" / "__init__.py").read_text()
    assert re.findall(r'^__version__ = "([^"]+)"$', init, re.MULTILINE) == [VERSION]


def test_the_client_files_are_clients_js_in_a_checkout() -> None:
    files = client_files()
    assert tuple(files) == CLIENT_FILES
    for name, path in files.items():
        assert path == client_path(name)
        assert path.read_bytes() == (JS_CLIENT / name).read_bytes()
    with pytest.raises(ValueError, match="not one of the client's files"):
        client_path("../../pyproject.toml")


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_the_route_serves_ss_js_as_javascript_revalidated_by_its_etag() -> None:
    app = Starlette(routes=[client_route("/static/ss.js")])
    body = (JS_CLIENT / "ss.js").read_bytes()
    async with asgi_client(app) as http:
        response = await http.get("/static/ss.js")
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-content-type-options"] == "nosniff"
        etag = response.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', etag)

        for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            cached = await http.get("/static/ss.js", headers={"if-none-match": if_none_match})
            assert cached.status_code == 304, if_none_match
            assert cached.content == b""
            assert cached.headers["etag"] == etag
        stale = await http.get("/static/ss.js", headers={"if-none-match": '"other"'})
        assert stale.status_code == 200
        assert stale.content == body

        head = await http.head("/static/ss.js")
        assert head.status_code == 200
        assert head.content == b""
        assert (await http.post("/static/ss.js")).status_code == 405


async def test_the_module_route_serves_ss_mjs_which_needs_ss_js_next_to_it() -> None:
    # The reason a module route needs the plain route at its sibling path (client_route's docstring).
    assert 'import "./ss.js";' in (JS_CLIENT / "ss.mjs").read_text()
    app = Starlette(routes=[client_route(), client_route("/ss.mjs", module=True)])
    async with asgi_client(app) as http:
        module = await http.get("/ss.mjs")
        plain = await http.get("/ss.js")
        assert module.status_code == 200
        assert module.content == (JS_CLIENT / "ss.mjs").read_bytes()
        assert module.headers["content-type"] == "text/javascript; charset=utf-8"
        assert plain.content == (JS_CLIENT / "ss.js").read_bytes()
        assert module.headers["etag"] != plain.headers["etag"]
    for path in ("/ss.js", "/static/ss.js"):
        with pytest.raises(ConfigurationError, match=r"imports \./ss\.js"):
            client_route(path, module=True)


# --- The artefacts, built, installed and used: slow -----------------------------------------------


def package_files() -> set[str]:
    """The files of typed_ss/ that git would commit (tracked, or new and not ignored), as they are now."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "typed_ss"], ROOT)
    return {name for name in listed.splitlines() if (ROOT / name).is_file()}


@pytest.mark.slow
def test_make_dist_builds_a_checked_wheel_with_the_package_and_the_client_only(dist: Dist) -> None:
    assert dist.make_output.count("PASSED") == 2, dist.make_output  # twine check, both files
    static = {f"typed_ss/codegen/static/{name}" for name in CLIENT_FILES}
    info = f"typed_ss-{VERSION}.dist-info"
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        assert {name for name in names if not name.startswith(f"{info}/")} == package_files() | static
        assert "typed_ss/py.typed" in names
        assert f"{info}/licenses/LICENSE" in names
        for name in CLIENT_FILES:
            packaged = wheel.read(f"typed_ss/codegen/static/{name}")
            assert packaged == (JS_CLIENT / name).read_bytes(), name
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert f"\nVersion: {VERSION}\n" in metadata
    assert {*EXTRAS, "all"} <= set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.MULTILINE))
    assert "typed-ss = typed_ss.cli:main" in entry_points


@pytest.mark.slow
def test_the_sdist_holds_what_building_the_wheel_needs_and_no_more(dist: Dist) -> None:
    # `uv build` built the wheel above from this sdist, so "what the wheel needs" is checked there.
    prefix = f"typed_ss-{VERSION}/"
    with tarfile.open(dist.sdist) as sdist:
        members = {m.name.removeprefix(prefix) for m in sdist.getmembers() if m.isfile()}
        pkg_info = sdist.extractfile(f"{prefix}PKG-INFO")
        assert pkg_info is not None
        assert f"\nVersion: {VERSION}\n" in pkg_info.read().decode()
    client = {f"clients/js/{name}" for name in CLIENT_FILES}
    # hatchling always adds PKG-INFO, pyproject.toml, the readme and .gitignore.
    built = {"PKG-INFO", "pyproject.toml", "README.md", ".gitignore"}
    assert members == package_files() | client | built | {"LICENSE"}


CHECK_INSTALLED = """
import importlib.metadata, json, sys
import typed_ss
from typed_ss.static import client_files, client_path
from typed_ss.backends import grpc, mongo, redis
print(json.dumps({
    "prefix": sys.prefix,
    "file": typed_ss.__file__,
    "version": typed_ss.__version__,
    "metadata": importlib.metadata.version("typed-ss"),
    "ss_js": str(client_path("ss.js")),
    "client_files": [str(path) for path in client_files().values()],
    "backends": [backend.__name__ for backend in (grpc, mongo, redis)],
    "sys_path": sys.path,
}))
"""

TINY_APP = """
import msgspec
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from typed_ss import Server, Socket
from typed_ss.static import client_route

ss = Server()


class Note(msgspec.Struct):
    text: str


notes = ss.event("note", Note)


@ss.on("echo")
async def echo(sock: Socket, text: str) -> None:
    await sock.emit("echo", text)


@ss.on("note")
async def note(sock: Socket, msg: Note) -> None:
    await notes.emit(sock, msg)


app = Starlette(
    routes=[
        WebSocketRoute("/socket", ss),
        client_route("/static/ss.js"),
        client_route("/static/ss.mjs", module=True),
    ],
    lifespan=ss.lifespan,
)
"""


@pytest.mark.slow
def test_the_installed_wheel_works_from_outside_the_repository(venv: Venv) -> None:
    site = (venv.root / "lib").resolve()
    static = Path("codegen", "static")
    report = json.loads(run([venv.python, "-c", CHECK_INSTALLED], venv.work, venv.env()))
    assert Path(report["prefix"]).resolve() == venv.root.resolve()
    package = Path(report["file"]).resolve().parent
    assert package.is_relative_to(site), f"typed_ss imported from {package}, not the venv"
    assert not any(Path(entry).resolve() == ROOT for entry in report["sys_path"] if entry)
    assert (package / "py.typed").is_file()
    assert report["version"] == report["metadata"] == VERSION
    assert Path(report["ss_js"]).resolve() == package / static / "ss.js"
    assert [Path(path).resolve() for path in report["client_files"]] == [
        package / static / name for name in CLIENT_FILES
    ]
    assert report["backends"] == [f"typed_ss.backends.{name}" for name in ("grpc", "mongo", "redis")]

    version = run([venv.bin / "typed-ss", "--version"], venv.work, venv.env())
    assert version.strip() == f"typed-ss, version {VERSION}"

    (venv.work / "tiny_app.py").write_text(TINY_APP)
    out = venv.work / "generated"
    run([venv.bin / "typed-ss", "gen-client", "tiny_app:ss", "--out", out], venv.work, venv.env())
    generated = {path.name for path in out.iterdir()}
    assert generated == {"ss.client.ts", *CLIENT_FILES, "ss.d.mts", "ss-typed.d.mts"}
    assert "note" in (out / "ss.client.ts").read_text()
    for name in CLIENT_FILES:
        assert (out / name).read_bytes() == (package / static / name).read_bytes(), name


# Loads the client the way a page does, from the installed server's route (ss.js, and ss.mjs, which
# imports ./ss.js from next to it), and talks to that server over a real WebSocket. Node 20 has a
# WebSocket global with --experimental-websocket (from Node 22 without), like a browser's.
SERVED_CLIENT = """
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");

const [base, dir] = process.argv.slice(2);
setTimeout(() => { console.error("no echo within 20 s"); process.exit(1); }, 20000).unref();

(async () => {
  for (const name of ["ss.js", "ss.mjs"]) {
    const response = await fetch(`${base}/static/${name}`);
    assert.equal(response.status, 200, name);
    assert.equal(response.headers.get("content-type"), "text/javascript; charset=utf-8");
    fs.writeFileSync(path.join(dir, name), await response.text());
  }
  const SS = require(path.join(dir, "ss.js"));
  const module = await import(pathToFileURL(path.join(dir, "ss.mjs")).href);
  assert.equal(module.default, SS);

  const ss = new SS(`${base.replace("http", "ws")}/socket`, { reconnectOpts: { enabled: false } });
  ss.onError((err) => { console.error("client error", err.code, err.message); process.exit(1); });
  ss.onConnect(() => ss.emit("echo", "hello from the served client"));
  await new Promise((resolve) => ss.on("echo", resolve)).then((text) => {
    console.log(JSON.stringify({ text, id: ss.id }));
    ss.close();
  });
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.fixture
def served(venv: Venv) -> Iterator[str]:
    """``typed-ss run`` of the tiny app from the venv; yields its http:// base URL."""
    (venv.work / "tiny_app.py").write_text(TINY_APP)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (venv.work / "server.log").open("w")
    server = subprocess.Popen(
        [venv.bin / "typed-ss", "run", "tiny_app:app", "--port", str(port)],
        cwd=venv.work,
        env=venv.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/static/ss.js", timeout=5) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server did not start:\n{(venv.work / 'server.log').read_text()}")
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow
def test_a_python_only_user_serves_the_client_from_the_installed_package(venv: Venv, served: str) -> None:
    script = venv.work / "served_client.js"
    script.write_text(SERVED_CLIENT)
    loaded = venv.work / "loaded"
    loaded.mkdir()
    flags = [] if node_major() >= 22 else ["--experimental-websocket", "--no-warnings"]
    result = json.loads(run(["node", *flags, script, served, loaded], venv.work, clean_env()))
    assert result["text"] == "hello from the served client"
    assert isinstance(result["id"], str)
    assert (loaded / "ss.js").read_bytes() == (JS_CLIENT / "ss.js").read_bytes()


def node_major() -> int:
    return int(run(["node", "--version"], ROOT).strip().lstrip("v").split(".")[0])


# --- The npm package ----------------------------------------------------------------------------------


NODE_CJS = """
const assert = require("node:assert/strict");
const path = require("node:path");
const SS = require("typed-ss-client");
const typed = require("typed-ss-client/typed");
assert.ok(require.resolve("typed-ss-client").startsWith(path.join(__dirname, "node_modules") + path.sep));

class FakeWebSocket {
  constructor(url, protocols) { FakeWebSocket.opened.push({ url, protocols: [].concat(protocols) }); }
  send() {}
  close() {}
}
FakeWebSocket.opened = [];
const options = { WebSocket: FakeWebSocket, reconnectOpts: { enabled: false } };
const ss = new SS("ws://example.invalid/socket", options);
assert.ok(ss instanceof SS);
assert.equal(ss.emit("chat", { text: "hi" }), true); // queued until the (fake) connection opens
typed.connect("ws://example.invalid/socket", { fingerprint: "f".repeat(32), kinds: {} }, options);
assert.equal(typed.RELOAD_NEEDED_CODE, 4010);
console.log(JSON.stringify(FakeWebSocket.opened));
"""

NODE_ESM = """
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import SS from "typed-ss-client";
import { connect, withContract, RELOAD_NEEDED_CODE } from "typed-ss-client/typed";

const require = createRequire(import.meta.url);
assert.equal(SS, require("typed-ss-client"), "import and require give the same class");
assert.equal(connect, require("typed-ss-client/typed").connect);
assert.equal(typeof SS, "function");
assert.equal(RELOAD_NEEDED_CODE, 4010);
console.log(withContract("ws://example.invalid/socket?room=a", "0".repeat(32)));
"""

# Compiled with tsc --strict under each module resolution a project may use. Each `@ts-expect-error`
# must meet an error (else TS2578), so types that resolved to `any` fail too.
TS_USAGE = """
import SS from "typed-ss-client";
import { connect, RELOAD_NEEDED_CODE, withContract } from "typed-ss-client/typed";
import type { TypedClient } from "typed-ss-client/typed";

interface Sent {
  chat: { room: string; text: string };
  ping: null;
}
interface Received {
  chat: { author: string; text: string };
}

export function plain(url: string): SS {
  const ss = new SS(url, { maxQueue: 10, reconnectOpts: { enabled: false } });
  // @ts-expect-error: an event name is a string
  ss.emit(42);
  return ss.emit("chat", { room: "tea", text: "hi" }) ? ss : ss.onConnect(() => undefined);
}

export function typed(url: string): TypedClient<Sent, Received> {
  const contract = { fingerprint: "0".repeat(32), kinds: { chat: "json", ping: "json" } } as const;
  const client = connect<Sent, Received>(url, contract);
  client.send.chat({ room: "tea", text: "hi" });
  client.send.ping();
  // @ts-expect-error: a chat message needs its room
  client.send.chat({ text: "hi" });
  client.on("chat", (m) => report(m.author.toUpperCase()));
  const code: 4010 = RELOAD_NEEDED_CODE;
  report(code, withContract(url, "0".repeat(32)));
  return client;
}

declare function report(...values: unknown[]): void;
"""

TS_USAGE_CJS = """
import SS = require("typed-ss-client");
import typed = require("typed-ss-client/typed");

export function plain(url: string): SS {
  const ss = new SS(url, { maxQueue: 10 });
  // @ts-expect-error: an event name is a string
  ss.emit(42);
  return ss;
}

export function connectTyped(url: string): typed.TypedClient<{ ping: null }, { pong: string }> {
  const contract = { fingerprint: "x", kinds: { ping: "json" } } as const;
  const client = typed.connect<{ ping: null }, { pong: string }>(url, contract);
  client.send.ping();
  // @ts-expect-error: ping takes no payload
  client.send.ping(1);
  client.on("pong", (text) => report(text.toUpperCase()));
  return client;
}

declare function report(...values: unknown[]): void;
"""


@pytest.mark.slow
def test_npm_pack_holds_the_client_and_its_types_only(npm_project: NpmProject) -> None:
    assert set(npm_project.packed) == NPM_FILES
    package = json.loads((npm_project.root / "node_modules" / "typed-ss-client" / "package.json").read_text())
    assert package["name"] == "typed-ss-client"
    assert package["version"] == VERSION
    assert not package.get("dependencies"), "the client has no dependencies (and installs offline)"
    for entry in (package["exports"]["."], package["exports"]["./typed"]):
        assert {"types", "import", "require"} <= set(entry)


@pytest.mark.slow
def test_the_installed_npm_package_loads_with_require_and_import(npm_project: NpmProject) -> None:
    (npm_project.root / "use.cjs").write_text(NODE_CJS)
    opened = json.loads(run(["node", "use.cjs"], npm_project.root, clean_env()))
    assert opened[0] == {"url": "ws://example.invalid/socket", "protocols": ["sac-sock"]}
    assert opened[1]["url"] == f"ws://example.invalid/socket?ss_contract={'f' * 32}"

    (npm_project.root / "use.mjs").write_text(NODE_ESM)
    url = run(["node", "use.mjs"], npm_project.root, clean_env()).strip()
    assert url == f"ws://example.invalid/socket?room=a&ss_contract={'0' * 32}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "resolution", "files"),
    [
        ("nodenext", "nodenext", {"usage.mts": TS_USAGE, "usage.cts": TS_USAGE_CJS}),
        ("preserve", "bundler", {"usage.ts": TS_USAGE}),
        # Node10 resolution (module commonjs's default) does not read `exports`: typesVersions serves it.
        ("commonjs", "node10", {"usage.ts": TS_USAGE}),
    ],
)
def test_typescript_compiles_against_the_installed_npm_package(
    npm_project: NpmProject, module: str, resolution: str, files: dict[str, str]
) -> None:
    if not TSC.exists():
        pytest.fail(f"TypeScript is missing ({TSC}); run `make setup` (it runs npm ci in clients/js)")
    # A directory of this test's inside the scratch project, so that node_modules is found above it.
    sources = npm_project.root / f"ts-{resolution}"
    sources.mkdir()
    for name, text in files.items():
        (sources / name).write_text(text)
    options = ["--strict", "--noEmit", "--pretty", "false", "--target", "es2020", "--lib", "es2020"]
    options += ["--module", module, "--moduleResolution", resolution, "--esModuleInterop"]
    assert run([TSC, *options, *files], sources, clean_env()) == ""
