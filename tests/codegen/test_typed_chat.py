"""examples/typed_chat: its committed client is current, and tsc checks the page's JavaScript against it.

(`make codegen-check` also fails `make test` when the committed client is stale; the node and Chromium
tests of the example are clients/js/test/typed-chat.test.mjs and tests/browser/test_typed_chat_page.py.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.codegen.support import ROOT, TSC, tool
from typed_ss.codegen import files, generate

STATIC = ROOT / "examples" / "typed_chat" / "static"


def test_the_committed_client_is_current() -> None:
    from examples.typed_chat.app import ss

    diffs = files.check(STATIC / "generated", generate(ss.contract, "js", "examples.typed_chat.app:ss"))
    assert not diffs, "examples/typed_chat/static/generated is stale: run `make codegen`\n" + "".join(diffs)


def check_js(directory: Path) -> tuple[int, str]:
    done = subprocess.run(
        [tool(TSC, "TypeScript"), "-p", "tsconfig.json", "--pretty", "false"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_page_script_type_checks_against_the_generated_client() -> None:
    assert check_js(STATIC) == (0, "")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("original", "broken", "code"),
    [
        ("client.send.say({ text });", "client.send.say({ text: 1 });", "TS2322"),
        ("client.send.say({ text });", "client.send.say({ text, extra: 1 });", "TS2353"),
        ('client.send.status(now ? "typing" : "idle");', 'client.send.status("busy");', "TS2345"),
        ("show(`${line.author}: ${line.text}`", "show(`${line.author}: ${line.body}`", "TS2339"),
    ],
)
def test_a_wrong_payload_in_the_page_script_is_a_tsc_error(
    original: str, broken: str, code: str, tmp_path: Path
) -> None:
    shutil.copytree(STATIC, tmp_path, dirs_exist_ok=True)
    script = tmp_path / "app.js"
    source = script.read_text()
    assert source.count(original) == 1
    script.write_text(source.replace(original, broken))
    status, output = check_js(tmp_path)
    assert status != 0
    assert set(re.findall(r"error (TS\d+)", output)) == {code}, output
