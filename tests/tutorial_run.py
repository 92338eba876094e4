"""The tutorial (docs/tutorial.md) run the way a newcomer runs it, one reusable step at a time.

Each step takes the tools as parameters (:class:`Toolchain`: the ``typed-ss`` command, tsc, node, and
where node finds the ``ws`` package), so the same steps run against this repository
(``tests/test_tutorial.py``) or against a typed-ss installed from the built wheel and npm tarball into
fresh environments::

    project = copy_tutorial(tmp_path / "chat")       # app.py and web/, as the tutorial has them
    generate_client(project, tools)                  # typed-ss gen-client app:ss --out web/generated
    main_js = compile_page(project, tools)           # tsc -p web
    async with serve(project, tools) as base:        # typed-ss run app:app --port <free port>
        await check_chat(base, main_js, tools)       # pages under node, and the HTTP route

The page is web/main.ts itself, compiled by tsc and run under node by :data:`PAGE_DRIVER`, which gives
it the few parts of a browser it uses (``location``, ``document.querySelector``, ``WebSocket``) and
prints every line it shows, so the checks read what a user would see.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support import connect_client, eventually, free_port

__all__ = [
    "COMPILE",
    "GEN_CLIENT",
    "PAGE_DRIVER",
    "PLAIN_CLIENT_DRIVER",
    "SERVE",
    "TUTORIAL",
    "Page",
    "Toolchain",
    "check_chat",
    "check_plain_client",
    "compile_page",
    "copy_tutorial",
    "generate_client",
    "open_page",
    "serve",
]

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial"
"""The tutorial's files: docs/tutorial.md shows every line of them (tests/test_docs.py checks it)."""

# The tutorial's commands, as docs/tutorial.md gives them (tests/test_tutorial.py checks that it does).
GEN_CLIENT = ("gen-client", "app:ss", "--out", "web/generated")
COMPILE = ("-p", "web")
SERVE = ("run", "app:app")

ANN, BOB = "ann-token", "bob-token"  # the users app.py loads at start-up: ann is an admin, bob is not
WAIT = 20.0  # seconds: a deadline for what a page shows, never a bound the checks assert


@dataclass(frozen=True)
class Toolchain:
    """The tools the tutorial's steps run."""

    typed_ss: tuple[str, ...]
    """The ``typed-ss`` command: the script an installation puts next to its python."""
    tsc: str
    """The TypeScript compiler (the tutorial: ``npx tsc``, from ``npm install --save-dev typescript``)."""
    node: str
    node_packages: Path
    """A ``package.json`` from which node resolves ``ws`` (node 20 has no WebSocket) and the browser
    client's npm package, ``typed-ss-client`` (here: clients/js's own, which resolves itself)."""

    @classmethod
    def of_python(cls, python: Path | str, *, tsc: str, node: str, node_packages: Path) -> Toolchain:
        """The toolchain whose ``typed-ss`` is the script installed next to ``python``."""
        script = Path(python).parent / "typed-ss"
        if not script.is_file():
            pytest.fail(f"{script} is missing: is typed-ss installed for {python}?")
        return cls((str(script),), tsc, node, node_packages)

    @classmethod
    def of_this_repository(cls) -> Toolchain:
        """This checkout: .venv's typed-ss, and tsc and ws from clients/js (``make setup``)."""
        js = ROOT / "clients" / "js"
        return cls.of_python(
            sys.executable,
            tsc=_tool(js / "node_modules" / ".bin" / "tsc", "TypeScript (clients/js/node_modules)"),
            node=_tool("node", "node"),
            node_packages=js / "package.json",
        )


def _tool(path: Path | str, what: str) -> str:
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{what} is missing ({path}); run `make setup`")
    return found


def _run(command: Sequence[str], project: Path, what: str) -> str:
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{what} failed ({done.returncode}): {' '.join(command)}\n{output}"
    return output


def copy_tutorial(project: Path) -> Path:
    """The tutorial's project as a newcomer ends up with it (app.py, web/index.html, web/main.ts,
    web/tsconfig.json), in ``project``: what the steps write goes there, not into the repository."""
    (project / "web").mkdir(parents=True)
    shutil.copy(TUTORIAL / "app.py", project / "app.py")
    for name in ("index.html", "main.ts", "tsconfig.json"):
        shutil.copy(TUTORIAL / "web" / name, project / "web" / name)
    return project


def generate_client(project: Path, tools: Toolchain) -> Path:
    """``typed-ss gen-client app:ss --out web/generated``; returns the generated TypeScript module."""
    _run([*tools.typed_ss, *GEN_CLIENT], project, "typed-ss gen-client")
    module = project / "web" / "generated" / "ss.client.ts"
    assert module.is_file(), f"typed-ss gen-client wrote no {module}"
    return module


def compile_page(project: Path, tools: Toolchain) -> Path:
    """``tsc -p web``: web/main.ts and the generated client, compiled in place; returns web/main.js."""
    _run([tools.tsc, *COMPILE, "--pretty", "false"], project, "tsc")
    main_js = project / "web" / "main.js"
    assert (project / "web" / "generated" / "ss.client.js").is_file()
    assert main_js.is_file(), f"tsc wrote no {main_js}"
    return main_js


@asynccontextmanager
async def serve(project: Path, tools: Toolchain) -> AsyncIterator[str]:
    """``typed-ss run app:app --port <free port>`` in ``project``, until it answers HTTP; yields the
    ``http://`` base URL, then stops it with SIGTERM (as a deployment does) and checks it ended well."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = project / "server.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *tools.typed_ss, *SERVE, "--port", str(port), cwd=project, stdout=log, stderr=subprocess.STDOUT
        )
    try:

        async def answers() -> bool:
            if process.returncode is not None:
                pytest.fail(f"typed-ss run exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{base}/ss.js")).status_code == 200
            except httpx.TransportError:
                return False  # not listening yet

        await eventually(answers, within=30, interval=0.1)
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
    # uvicorn shuts down gracefully on SIGTERM, then ends by that signal (-15) or with 0.
    output = log_path.read_text()
    ended = process.returncode
    assert ended in (0, -signal.SIGTERM), f"typed-ss run ended with {ended}:\n{output}"
    assert "Application shutdown complete." in output, output


PAGE_DRIVER = r"""
// The tutorial's page (web/main.js) under node, given the parts of a browser it uses.
//   node page.mjs <main.js> <the page's URL> <a package.json from which `ws` resolves>
// Prints each line the page shows, as JSON, one per line; each JSON string read from stdin is typed
// into the page's form and submitted. Closing stdin closes the page.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [mainJs, pageUrl, packageJson] = process.argv.slice(2);
globalThis.WebSocket = createRequire(packageJson)("ws").WebSocket;
globalThis.location = new URL(pageUrl);

class Element {
  constructor(tag) {
    this.tag = tag;
    this.textContent = "";
    this.value = "";
    this.listeners = [];
  }
  append(child) {
    if (this === elements["#log"]) console.log(JSON.stringify(child.textContent));
  }
  addEventListener(type, listener) {
    this.listeners.push([type, listener]);
  }
  dispatch(type) {
    const event = { type, preventDefault() {} };
    for (const [wanted, listener] of this.listeners) if (wanted === type) listener(event);
  }
}
const elements = { "#log": new Element("ul"), form: new Element("form"), input: new Element("input") };
globalThis.document = {
  querySelector(selector) {
    if (!(selector in elements)) throw new Error("the page looks for " + selector + ", which page.mjs lacks");
    return elements[selector];
  },
  createElement: (tag) => new Element(tag),
};

await import(pathToFileURL(mainJs).href);
for await (const text of createInterface({ input: process.stdin })) {
  elements.input.value = JSON.parse(text);
  elements.form.dispatch("submit");
}
process.exit(0);
"""


PLAIN_CLIENT_DRIVER = r"""
// The plain client from the npm package (what a bundled page imports), signed in as bob.
//   node plain.mjs <ws://.../socket?token=...> <a package.json from which typed-ss-client and ws resolve>
// Prints {"me": <the welcome payload>, "file": <the package's ss.js>} and exits 0 once welcomed.
import { createRequire } from "node:module";

const [url, packageJson] = process.argv.slice(2);
const require = createRequire(packageJson);
const SS = require("typed-ss-client");
const ss = new SS(url, { WebSocket: require("ws").WebSocket, reconnectOpts: { enabled: false } });
const timer = setTimeout(() => {
  console.error("no welcome");
  process.exit(1);
}, 20000);
ss.onError((error) => console.error(error.code, error.message));
ss.on("welcome", (me) => {
  clearTimeout(timer);
  console.log(JSON.stringify({ me, file: require.resolve("typed-ss-client") }));
  ss.close();
});
"""


async def check_plain_client(base: str, directory: Path, tools: Toolchain) -> None:
    """The npm package's plain client signs in and is welcomed, and the ``/ss.js`` that the app serves
    (``ss.client_route``, from the Python package) is that same client."""
    driver = directory / "plain.mjs"
    driver.write_text(PLAIN_CLIENT_DRIVER)
    url = base.replace("http://", "ws://") + f"/socket?token={BOB}"
    process = await asyncio.create_subprocess_exec(
        tools.node, str(driver), url, str(tools.node_packages), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stdout.decode() + stderr.decode()
    report = json.loads(stdout)
    assert report["me"] == {"name": "bob", "admin": False}
    async with httpx.AsyncClient() as http:
        served = (await http.get(f"{base}/ss.js")).text
    package_file = await asyncio.to_thread(Path(report["file"]).read_text)
    assert served == package_file, f"/ss.js is not {report['file']}"


class Page:
    """One page of the tutorial, running under node: what it has shown, and its form."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            text = raw.decode().rstrip("\n")
            try:
                self.lines.append(json.loads(text))
            except json.JSONDecodeError:
                self.lines.append(f"(not from the page) {text}")  # node's own errors, kept for the report

    async def shows(self, text: str) -> None:
        """Wait until the page has shown ``text`` (a whole line)."""
        await self._wait(lambda: text in self.lines, repr(text))

    async def shows_line_starting(self, prefix: str) -> None:
        """Wait until the page has shown a line starting with ``prefix``."""
        await self._wait(lambda: any(line.startswith(prefix) for line in self.lines), f"a line {prefix}...")

    async def _wait(self, condition: Callable[[], bool], what: str) -> None:
        try:
            await eventually(condition, within=WAIT)
        except AssertionError:
            raise AssertionError(f"page {self.name} never showed {what}; it showed {self.lines}") from None

    async def say(self, text: str) -> None:
        """Type ``text`` into the page's form and submit it."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(text).encode() + b"\n")
        await self.process.stdin.drain()

    async def close(self) -> None:
        """Close the page (node exits once its stdin is closed), killing it if it does not."""
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader


@asynccontextmanager
async def open_page(
    name: str, main_js: Path, base: str, tools: Toolchain, *, token: str | None, room: str = "lobby"
) -> AsyncIterator[Page]:
    """The page at ``base/?token=...&room=...`` (no token at all when ``token`` is None), under node."""
    driver = main_js.parent / "page.mjs"
    if not driver.exists():
        driver.write_text(PAGE_DRIVER)
    query = urlencode({"room": room} if token is None else {"token": token, "room": room})
    process = await asyncio.create_subprocess_exec(
        tools.node,
        str(driver),
        str(main_js),
        f"{base}/?{query}",
        str(tools.node_packages),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    page = Page(name, process)
    try:
        yield page
    finally:
        await page.close()


async def check_chat(base: str, main_js: Path, tools: Toolchain) -> None:
    """The tutorial's promises, against its app served at ``base``: the page and the client are
    served; a signed-in page gets its typed identity back and chats; a page without a token is refused;
    an admin's POST reaches the sockets in the room, and only those; a page that closes is seen to go;
    the plain client from the npm package works too (:func:`check_plain_client`)."""
    async with httpx.AsyncClient(base_url=base) as http:
        index = await http.get("/")
        assert index.status_code == 200
        assert '<script type="module" src="main.js"></script>' in index.text
        for path in ("/main.js", "/generated/ss.client.js", "/generated/ss-typed.mjs", "/generated/ss.mjs"):
            assert (await http.get(path)).status_code == 200, path
        plain = await http.get("/ss.js")  # ss.client_route: the plain client, for pages without a build
        assert plain.headers["content-type"].startswith("text/javascript")
        assert "sac-sock" in plain.text

        async with (
            open_page("ann", main_js, base, tools, token=ANN) as ann,
            open_page("nobody", main_js, base, tools, token=None) as nobody,
        ):
            await ann.shows("Signed in as ann (admin)")
            await ann.shows("ann joined")
            await nobody.shows_line_starting("connect_failed: ")  # refused before the upgrade
            async with open_page("bob", main_js, base, tools, token=BOB) as bob:
                await bob.shows("Signed in as bob")
                await ann.shows("bob joined")
                async with open_page(
                    "bob in the kitchen", main_js, base, tools, token=BOB, room="kitchen"
                ) as cook:
                    await cook.shows("bob joined")

                    await bob.say("hi ann")
                    for page in (ann, bob):
                        await page.shows("bob: hi ann")

                    # The HTTP route: an admin's POST reaches the sockets in the room, and only those.
                    posted = await http.post(
                        "/rooms/lobby/announce", params={"token": ANN}, json={"text": "Tea is ready"}
                    )
                    assert posted.status_code == 204, posted.text
                    for page in (ann, bob):
                        await page.shows("ann: Tea is ready")
                    kitchen = await http.post(
                        "/rooms/kitchen/announce", params={"token": ANN}, json={"text": "Kitchen closes"}
                    )
                    assert kitchen.status_code == 204, kitchen.text
                    await cook.shows("ann: Kitchen closes")
                    # Frames reach a socket in order: the lobby's line would have come before this one.
                    assert "ann: Tea is ready" not in cook.lines, cook.lines
                    assert "bob: hi ann" not in cook.lines, cook.lines

                    not_admin = await http.post(
                        "/rooms/lobby/announce", params={"token": BOB}, json={"text": "no"}
                    )
                    assert not_admin.status_code == 403
                    anonymous = await http.post("/rooms/lobby/announce", json={"text": "no"})
                    assert anonymous.status_code == 401
            await ann.shows("bob left")  # the disconnect hook, from the session kept for bob's socket
            assert not any(line.startswith("Signed in") for line in nobody.lines), nobody.lines

    await check_plain_client(base, main_js.parent, tools)

    # What the refused page could not see (a browser hides it too): the upgrade's HTTP status.
    with pytest.raises(InvalidStatus) as refused:
        async with connect_client(base.replace("http://", "ws://"), path="/socket?token=wrong"):
            pass
    assert refused.value.response.status_code == 403
