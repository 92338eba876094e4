"""tsc (pinned in clients/js/package.json) over the generated client, strict settings.

For both outputs (``--lang ts``, and ``--lang js`` through its ``.d.ts``): ``ts/usage_ok.ts`` must
compile; every line of ``ts/usage_expect_errors.ts`` marked ``@ts-expect-error`` must fail (else tsc
reports TS2578); and each ``ts/fail/*.ts`` must fail with exactly the error code its first line names.
A failing compile is asserted by its code, never by the exit status alone: a broken setup (TS5xxx, a
missing tsc) must not pass for a type error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.codegen.support import HERE, TSC, generate_app, tool
from typed_ss.codegen import Lang

pytestmark = pytest.mark.slow

CHECKS = HERE / "ts"
ERROR = re.compile(r"^(?P<file>[^\s(]+)\(\d+,\d+\): error (?P<code>TS\d+):", re.MULTILINE)


def tsc(directory: Path, config: str) -> tuple[int, str]:
    done = subprocess.run(
        [tool(TSC, "TypeScript (clients/js/node_modules/.bin/tsc)"), "-p", config, "--pretty", "false"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def checks_with_client(tmp_path: Path, lang: Lang) -> Path:
    shutil.copytree(CHECKS, tmp_path, dirs_exist_ok=True)
    generate_app(tmp_path / "generated", lang)
    return tmp_path


@pytest.mark.timeout(180)
@pytest.mark.parametrize("lang", ["ts", "js"])
def test_usage_compiles_and_every_expected_error_errors(lang: Lang, tmp_path: Path) -> None:
    status, output = tsc(checks_with_client(tmp_path, lang), "tsconfig.json")
    assert (status, output) == (0, ""), output


def expected_codes() -> dict[str, str]:
    codes = {}
    for path in sorted((CHECKS / "fail").glob("*.ts")):
        match = re.match(r"// expect (TS\d+):", path.read_text())
        assert match is not None, f"{path} must start with `// expect TSxxxx: why`"
        codes[f"fail/{path.name}"] = match[1]
    return codes


@pytest.mark.timeout(180)
@pytest.mark.parametrize("lang", ["ts", "js"])
def test_each_must_fail_file_fails_with_its_error_code(lang: Lang, tmp_path: Path) -> None:
    expected = expected_codes()
    assert len(expected) >= 5
    status, output = tsc(checks_with_client(tmp_path, lang), "tsconfig.fail.json")
    assert status != 0, output
    found: dict[str, set[str]] = defaultdict(set)
    for match in ERROR.finditer(output):
        found[match["file"]].add(match["code"])
    assert not set(found) - set(expected), f"errors outside fail/ (a broken setup?):\n{output}"
    for file, code in expected.items():
        assert found.get(file) == {code}, f"{file}: expected only {code}, got {found.get(file)}:\n{output}"
