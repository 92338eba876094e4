"""The typed-ss command: gen-client (writes, skips unchanged files, --check), schema, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.codegen.support import APP, ROOT
from typed_ss.cli import main

# The generated module, and next to it the runtime it imports: the plain client and the typed runtime.
RUNTIME_FILES = [
    "ss-typed.d.mts",
    "ss-typed.d.ts",
    "ss-typed.js",
    "ss-typed.mjs",
    "ss.d.mts",
    "ss.d.ts",
    "ss.js",
    "ss.mjs",
]
FILES = {
    "ts": sorted(["ss.client.ts", *RUNTIME_FILES]),
    "js": sorted(["ss.client.d.ts", "ss.client.js", *RUNTIME_FILES]),
}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "gen-client" in result.output
    assert "schema" in result.output


def test_python_m_typed_ss_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "typed_ss", "gen-client", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Usage: typed-ss gen-client" in done.stdout
    assert "--check" in done.stdout


@pytest.mark.parametrize("lang", ["ts", "js"])
def test_gen_client_writes_the_files_and_then_leaves_them_alone(lang: str, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "generated"
    first = run("gen-client", APP, "--out", str(out), "--lang", lang)
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in out.iterdir()) == FILES[lang]
    assert first.output.count("wrote ") == len(FILES[lang])
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    modes = {p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert all(mode & 0o444 == 0o444 for mode in modes), modes  # readable, like any served file

    second = run("gen-client", APP, "--out", str(out), "--lang", lang)
    assert second.exit_code == 0
    assert "up to date" in second.output
    assert "wrote" not in second.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == times


def test_check_passes_on_fresh_files_and_fails_on_stale_ones_without_writing(tmp_path: Path) -> None:
    assert run("gen-client", APP, "--out", str(tmp_path)).exit_code == 0
    fresh = run("gen-client", APP, "--out", str(tmp_path), "--check")
    assert (fresh.exit_code, fresh.stdout.strip()) == (0, f"{tmp_path}: up to date")

    client = tmp_path / "ss.client.ts"
    stale_text = client.read_text().replace("  tags: string[];\n", "", 1)
    client.write_text(stale_text)
    (tmp_path / "ss.js").unlink()
    stale = run("gen-client", APP, "--out", str(tmp_path), "--check")
    assert stale.exit_code == 1
    assert "+  tags: string[];" in stale.stdout
    assert f"{tmp_path / 'ss.js'} (missing)" in stale.stdout
    assert "2 generated file(s)" in stale.stderr
    assert client.read_text() == stale_text
    assert not (tmp_path / "ss.js").exists()


def test_check_of_a_missing_directory_fails(tmp_path: Path) -> None:
    result = run("gen-client", APP, "--out", str(tmp_path / "nothing"), "--check")
    assert result.exit_code == 1
    assert not (tmp_path / "nothing").exists()


def write_module(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(body))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:ss", 'Could not import module "no_such_module".'),
        ("tests.codegen.app:nope", 'Attribute "nope" not found in module "tests.codegen.app".'),
        ("tests.codegen.app:app", '"tests.codegen.app:app" is a Starlette, not a typed_ss.Server'),
        ("tests.codegen.app", 'Import string "tests.codegen.app" must be in format "<module>:<attribute>".'),
        ("cli_broken_module:ss", 'Importing "cli_broken_module" failed: ZeroDivisionError: division by zero'),
        ("cli_missing_dependency:ss", 'Importing "cli_missing_dependency" failed: ModuleNotFoundError'),
    ],
)
def test_import_failures_exit_2_with_one_line(target: str, message: str, tmp_path: Path) -> None:
    write_module(tmp_path, "cli_broken_module", "ss = 1 / 0\n")
    write_module(tmp_path, "cli_missing_dependency", "import no_such_dependency\n")
    result = run("gen-client", target, "--out", str(tmp_path / "out"), "--app-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_app_dir_and_dotted_attributes(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "cli_user_app",
        """\
        import msgspec
        from typed_ss import Server, Socket

        class Note(msgspec.Struct):
            text: str

        class Container:
            ss = Server()

        notes = Container.ss.event("note", Note)
        """,
    )
    out = str(tmp_path / "out")
    result = run("gen-client", "cli_user_app:Container.ss", "--out", out, "--app-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "note: Note;" in (tmp_path / "out" / "ss.client.ts").read_text()


def test_a_type_without_a_schema_exits_2_naming_event_and_field(tmp_path: Path) -> None:
    # The server refuses the type when the app registers it, so the import fails: one line, exit 2.
    write_module(
        tmp_path,
        "cli_odd_app",
        """\
        import pydantic
        from typed_ss import Server

        class Weird:
            pass

        class Odd(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
            weird: Weird

        ss = Server()
        ss.event("odd", Odd)
        """,
    )
    result = run("gen-client", "cli_odd_app:ss", "--out", str(tmp_path / "out"), "--app-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "event 'odd'" in result.stderr
    assert "Odd.weird" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_schema_prints_the_contract_json_schema() -> None:
    from tests.codegen.app import ss

    result = run("schema", APP)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(json.dumps(ss.contract.json_schema()))
