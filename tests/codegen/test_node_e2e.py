"""The generated client (both outputs) driving a real server under node: tests/codegen/e2e.mjs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.codegen.app import app, ss
from tests.codegen.support import HERE, JS_CLIENT, TSC, generate_app, tool
from tests.support import running
from typed_ss.codegen import Lang


def compiled_ts_client(tmp_path: Path) -> Path:
    """The --lang ts output, compiled by tsc to JavaScript next to the runtime it imports."""
    source = generate_app(tmp_path / "ts", "ts")
    out = tmp_path / "ts-out"
    subprocess.run(
        [
            tool(TSC, "TypeScript"),
            *("--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler"),
            *("--lib", "es2022,dom", "--strict", "--outDir", str(out)),
            str(source / "ss.client.ts"),
        ],
        check=True,
        timeout=120,
    )
    for name in ("ss.js", "ss.mjs", "ss-typed.js", "ss-typed.mjs"):
        shutil.copy(source / name, out / name)
    return out / "ss.client.js"


def js_client(tmp_path: Path) -> Path:
    return generate_app(tmp_path / "js", "js") / "ss.client.js"


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("lang", ["js", "ts"])
async def test_the_generated_client_drives_a_real_server(lang: Lang, tmp_path: Path) -> None:
    module = js_client(tmp_path) if lang == "js" else compiled_ts_client(tmp_path)
    # An ES module package, as a browser sees the files (ss.js then runs as a module, too).
    (module.parent / "package.json").write_text(json.dumps({"type": "module"}))
    node = tool("node", "node")
    async with running(app, ss) as url:
        process = await asyncio.create_subprocess_exec(
            node,
            str(HERE / "e2e.mjs"),
            str(module),
            url,
            str(JS_CLIENT / "package.json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode()
    assert process.returncode == 0, text
    assert "not ok" not in text
    assert text.count("ok - ") >= 19, text
