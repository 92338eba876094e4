"""The tutorial, from the built packages: the wheel installed into a fresh venv outside the repository,
the npm tarball into a scratch npm project, and docs/tutorial.md's app (examples/tutorial) run from
there: a FastAPI app with an authenticated, typed identity, its generated TypeScript client compiled and
run under node against it, and the plain client from the npm package.

The same steps as tests/test_tutorial.py (tests/tutorial_run.py), with another toolchain: nothing comes
from this checkout but the tutorial's files (copied, as a newcomer types them), tsc, and ``ws`` (which
stands in for a browser's WebSocket under node 20).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.installed import NpmProject, Venv
from tests.tutorial_run import Toolchain, check_chat, compile_page, copy_tutorial, generate_client, serve

ROOT = Path(__file__).resolve().parent.parent
JS_CLIENT = ROOT / "clients" / "js"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def installed_toolchain(venv: Venv, npm_project: NpmProject) -> Toolchain:
    """The installed typed-ss, and node resolving ``typed-ss-client`` from the installed tarball."""
    modules = npm_project.root / "node_modules"
    ws = modules / "ws"
    if not ws.exists():
        # The browser's WebSocket under node 20: the test's stand-in, not part of what a user installs.
        ws.symlink_to(JS_CLIENT / "node_modules" / "ws", target_is_directory=True)
    installed_client = (modules / "typed-ss-client").resolve()
    assert JS_CLIENT.resolve() not in installed_client.parents, installed_client
    return Toolchain.of_python(
        venv.python,
        tsc=str(JS_CLIENT / "node_modules" / ".bin" / "tsc"),
        node="node",
        node_packages=npm_project.root / "package.json",
    )


async def test_the_tutorial_runs_from_the_installed_packages(
    venv: Venv, npm_project: NpmProject, tmp_path: Path
) -> None:
    tools = installed_toolchain(venv, npm_project)
    assert Path(tools.typed_ss[0]).parent == venv.bin  # the venv's typed-ss, not the repository's
    project = copy_tutorial(tmp_path / "chat")
    generate_client(project, tools)
    main_js = compile_page(project, tools)
    async with serve(project, tools) as base:
        await check_chat(base, main_js, tools)
