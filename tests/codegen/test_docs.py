"""The code in docs/codegen.md works as written: readers copy it, so a missing import is a bug.

The Python example declares a server; the TypeScript example must compile, under the strict settings
of ``ts/tsconfig.base.json``, against the client generated from that very server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.codegen.support import HERE, ROOT, TSC, tool
from typed_ss import Server
from typed_ss.codegen import generate
from typed_ss.codegen.files import write

DOC = ROOT / "docs" / "codegen.md"
BLOCK = re.compile(r"^```(?P<lang>\w+)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(lang: str) -> list[str]:
    found = [m["code"] for m in BLOCK.finditer(DOC.read_text()) if m["lang"] == lang]
    assert found, f"{DOC} has no {lang} code block"
    return found


def run_python(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "codegen_doc_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def test_every_python_example_runs() -> None:
    for code in blocks("python"):
        run_python(code)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_typescript_example_compiles_against_the_client_of_the_python_example(tmp_path: Path) -> None:
    ss = run_python(blocks("python")[0])["ss"]
    assert isinstance(ss, Server)
    write(tmp_path / "generated", generate(ss.contract, "ts", "docs/codegen.md"))
    shutil.copy(HERE / "ts" / "tsconfig.base.json", tmp_path)
    names = []
    for number, code in enumerate(blocks("ts")):
        names.append(f"example_{number}.ts")
        (tmp_path / names[-1]).write_text(code)
    (tmp_path / "tsconfig.json").write_text(json.dumps({"extends": "./tsconfig.base.json", "files": names}))
    done = subprocess.run(
        [
            tool(TSC, "TypeScript (clients/js/node_modules/.bin/tsc)"),
            "-p",
            "tsconfig.json",
            "--pretty",
            "false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
