"""mypy --strict on a user module: the issue's public-API example (examples/quickstart.py)
type-checks, a handler whose annotation contradicts its explicit model does not.
``tests/typing/check_api.py`` holds the finer checks, run by ``make typecheck``."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mypy import api

# The public-API code block, as the quickstart example carries it (test_examples runs it).
USER_MODULE = (Path(__file__).resolve().parent.parent / "examples" / "quickstart.py").read_text()

CONTRADICTING_HANDLER = textwrap.dedent(
    """\

    @ss.on("count", Chat)
    async def count(sock: Socket, n: int) -> None: ...
    """
)


@pytest.fixture(scope="module")
def mypy_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config with nothing but ``[mypy]`` (so the project's config does not apply) and a cache shared
    by this module's runs: the second run reuses what the first learnt about typed_ss and starlette."""
    root = tmp_path_factory.mktemp("mypy")
    config = root / "mypy.ini"
    config.write_text("[mypy]\n")
    return config, root / "cache"


def run_mypy(module: Path, dirs: tuple[Path, Path]) -> tuple[str, int]:
    config, cache = dirs
    stdout, stderr, status = api.run(
        ["--strict", "--config-file", str(config), "--cache-dir", str(cache), "--no-pretty", str(module)]
    )
    assert not stderr, stderr
    return stdout, status


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_mypy_strict_accepts_the_public_api_example(tmp_path: Path, mypy_dirs: tuple[Path, Path]) -> None:
    module = tmp_path / "user_app.py"
    module.write_text(USER_MODULE)
    stdout, status = run_mypy(module, mypy_dirs)
    assert status == 0, stdout
    assert "Success: no issues found in 1 source file" in stdout


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_mypy_strict_rejects_annotation_contradicting_the_explicit_model(
    tmp_path: Path, mypy_dirs: tuple[Path, Path]
) -> None:
    module = tmp_path / "user_app.py"
    source = USER_MODULE + CONTRADICTING_HANDLER
    module.write_text(source)
    decorator_line = source.splitlines().index('@ss.on("count", Chat)') + 1

    stdout, status = run_mypy(module, mypy_dirs)

    assert status == 1, stdout
    errors = [line for line in stdout.splitlines() if ": error: " in line]
    assert len(errors) == 1, stdout
    match = re.fullmatch(r".*user_app\.py:(\d+): error: (.*)  \[([a-z-]+)\]", errors[0])
    assert match is not None, errors[0]
    line, message, code = match.groups()
    assert (int(line), code) == (decorator_line, "arg-type")
    assert '"Callable[[Socket[Any], int], Coroutine[Any, Any, None]]"' in message
    assert '"Callable[[Socket[Any], Chat], Coroutine[Any, Any, None]]"' in message
