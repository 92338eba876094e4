"""The code in README.md and docs/*.md works as written: readers copy it, so a missing import, a renamed
flag or a make target that is gone is a bug. tests/README.md ("Code in the documentation") gives the
conventions a block follows; in short:

- A ```python block is a module of its own: mypy --strict checks it, and it is run (imported under a
  name that is not ``__main__``); every ``Server`` it defines then builds its contract and, without a
  backend, starts and stops. Put code that serves under ``if __name__ == "__main__":``.
- Comments right before a fence direct the check (several are separated by ``;``):
  ``<!-- continues -->`` (this block continues the previous Python block of the file: they are one
  module), ``<!-- types only: why -->`` (checked, not run) and ``<!-- file: path#region -->`` (the block
  shows that file, or that region of it, and must equal it; the file's Python blocks are one module).
- A ```ts block compiles, under the strict settings of tests/codegen/ts/tsconfig.base.json, against the
  client generated from the last Python module before it in the file.
- A ```sh block's every command parses: ``typed-ss`` (by its own command-line parser, and its
  subcommand's ``--help`` runs), ``uvicorn`` (by uvicorn's parser; protocol classes given by import
  string import), ``make`` (``make -n``), ``pip install`` and ``npm install`` (the packages exist);
  a short list of other commands (:data:`NOT_RUN`) is named and left alone, and anything else fails.
  Inline code spans that are ``make``, ``uvicorn`` or ``typed-ss`` commands are checked too.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import click
import pytest
from mypy import api as mypy_api
from uvicorn.importer import import_from_string
from uvicorn.main import main as uvicorn_cli

from typed_ss import Server
from typed_ss.cli import main as typed_ss_cli
from typed_ss.codegen import generate
from typed_ss.codegen.files import write

ROOT: Final = Path(__file__).resolve().parent.parent
DOCS: Final = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
JS_CLIENT: Final = ROOT / "clients" / "js"
TSC: Final = JS_CLIENT / "node_modules" / ".bin" / "tsc"
TS_BASE_CONFIG: Final = ROOT / "tests" / "codegen" / "ts" / "tsconfig.base.json"
SHELL_LANGUAGES: Final = frozenset({"sh", "bash", "shell"})

NOT_RUN: Final = {
    "cd": "a shell built-in",
    "mkdir": "makes a directory",
    ".": "a shell built-in (activates a virtualenv)",
    "curl": "the tutorial's POST: tests/test_tutorial.py makes the same request",
}
"""Commands a shell block may give that this test leaves alone, with why."""


# --- reading the blocks ------------------------------------------------------------------------------


def doc_id(doc: Path) -> str:
    """``doc`` as messages name it: relative to the repository when it is in it."""
    return str(doc.relative_to(ROOT)) if doc.is_relative_to(ROOT) else str(doc)


@dataclass(frozen=True)
class Block:
    """A fenced code block of a Markdown file."""

    doc: Path
    line: int
    """The line of its opening fence (1-based)."""
    lang: str
    code: str
    directives: tuple[str, ...]
    """The directives of the HTML comment on the line before the fence (``<!-- continues -->``)."""

    @property
    def where(self) -> str:
        return f"{doc_id(self.doc)}:{self.line}"

    def directive(self, name: str) -> str | None:
        """The argument of directive ``name`` (``""`` when it takes none), or None if absent."""
        for directive in self.directives:
            key, _, argument = directive.partition(":")
            if key.strip() == name:
                return argument.strip()
        return None


DIRECTIVES: Final = frozenset({"continues", "types only", "file"})
_COMMENT = re.compile(r"^<!--(.*)-->$")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")


def read_blocks(doc: Path) -> list[Block]:
    """Every fenced block of ``doc``, in order, with the indentation of its fence removed."""
    lines = doc.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent = len(opening["indent"])
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{doc.relative_to(ROOT)}:{index + 1}: the block is never closed"
        comment = _COMMENT.match(lines[index - 1].strip()) if index > 0 else None
        directives = tuple(d.strip() for d in comment[1].split(";")) if comment else ()
        code = "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"
        blocks.append(Block(doc, index + 1, opening["lang"], code, directives))
        index = end + 1
    return blocks


def prose(doc: Path) -> str:
    """``doc`` without its fenced blocks."""
    kept: list[str] = []
    inside = False
    for line in doc.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


_REGION = re.compile(r"^\s*(?:#|//|<!--)\s*#?region\s+(?P<name>[\w-]+)")
_END_REGION = re.compile(r"^\s*(?:#|//|<!--)\s*#?endregion\b")


def regions(path: Path) -> dict[str, str]:
    """The regions of a file (``# region NAME`` ... ``# endregion``, or with ``// #region`` in
    TypeScript), in order, without their marker lines or the blank lines around them."""
    found: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if (start := _REGION.match(line)) is not None:
            assert name is None, f"{path}:{number}: region {start['name']!r} inside {name!r}"
            name, body = start["name"], []
        elif _END_REGION.match(line):
            assert name is not None, f"{path}:{number}: endregion outside a region"
            assert name not in found, f"{path}: two regions named {name!r}"
            found[name] = "\n".join(body).strip("\n") + "\n"
            name = None
        elif name is not None:
            body.append(line)
        else:
            assert not line.strip(), f"{path}:{number}: a line outside every region would be hidden: {line!r}"
    assert name is None, f"{path}: region {name!r} is never closed"
    return found


def shown_file(block: Block) -> tuple[Path, str | None] | None:
    """The file (and region) a ``<!-- file: path#region -->`` block shows, or None."""
    target = block.directive("file")
    if target is None:
        return None
    assert target, f"{block.where}: `file:` names no file"
    path, _, region = target.partition("#")
    return ROOT / path, region or None


def check_directives(block: Block) -> None:
    for directive in block.directives:
        name = directive.partition(":")[0].strip()
        assert name in DIRECTIVES, (
            f"{block.where}: unknown directive {directive!r} (known: {sorted(DIRECTIVES)})"
        )
    if block.directive("types only") == "":
        raise AssertionError(f"{block.where}: `types only:` must say why the block cannot run")


# --- Python modules ----------------------------------------------------------------------------------


@dataclass
class Module:
    """One or more Python blocks checked and run as one module."""

    blocks: list[Block]
    file: Path | None = None
    """The repository file the blocks show (``file:``): run from there."""
    runs: bool = True

    @property
    def first(self) -> Block:
        return self.blocks[0]

    @property
    def name(self) -> str:
        stem = re.sub(r"\W", "_", self.first.doc.stem.lower())
        return f"doc_{stem}_line_{self.first.line}"

    def source(self) -> tuple[str, list[str | None]]:
        """The module's code, and for each of its lines where it is in the documentation."""
        parts: list[str] = []
        places: list[str | None] = []
        for block in self.blocks:
            if parts:
                parts.append("\n\n")  # two blank lines between blocks, as between top-level definitions
                places += [None, None]
            parts.append(block.code)
            places += [f"{doc_id(block.doc)}:{block.line + n}" for n in range(1, block.code.count("\n") + 1)]
        return "".join(parts), places


def python_modules(doc: Path) -> list[Module]:
    """The Python modules of ``doc``: one per block, except that ``continues`` blocks join the module
    before them and the blocks that show one file (``file:``) are one module."""
    modules: list[Module] = []
    by_file: dict[Path, Module] = {}
    for block in read_blocks(doc):
        check_directives(block)
        if block.lang != "python":
            continue
        shown = shown_file(block)
        if shown is not None:
            path = shown[0]
            if path not in by_file:
                by_file[path] = Module([], file=path)
                modules.append(by_file[path])
            module = by_file[path]
        elif block.directive("continues") is not None:
            assert modules, f"{block.where}: continues no Python block"
            module = modules[-1]
            assert module.file is None, f"{block.where}: continues a block that shows a file"
        else:
            module = Module([])
            modules.append(module)
        module.blocks.append(block)
        if block.directive("types only") is not None:
            module.runs = False
    return modules


def documents_with(lang: str) -> list[Path]:
    return [doc for doc in DOCS if any(block.lang == lang for block in read_blocks(doc))]


def import_module(module: Module, directory: Path) -> ModuleType:
    """Run the module under a name of its own (so ``if __name__ == "__main__":`` does not serve)."""
    if module.file is not None:
        path = module.file
    else:
        path = directory / f"{module.name}.py"
        path.write_text(module.source()[0])
    spec = importlib.util.spec_from_file_location(module.name, path)
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    # Registered while it runs and afterwards: msgspec and typed-ss resolve annotations through it.
    sys.modules[module.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def servers_of(namespace: ModuleType) -> list[Server[Any]]:
    found = {id(value): value for value in vars(namespace).values() if isinstance(value, Server)}
    return list(found.values())


@pytest.fixture
def loaded_modules() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("doc", documents_with("python"), ids=doc_id)
async def test_every_python_block_runs(doc: Path, tmp_path: Path, loaded_modules: list[str]) -> None:
    for module in python_modules(doc):
        if not module.runs:
            continue
        loaded_modules.append(module.name)
        try:
            namespace = import_module(module, tmp_path)
        except Exception as exc:
            raise AssertionError(f"{module.first.where}: the block fails when run: {exc!r}") from exc
        for server in servers_of(namespace):
            assert server.contract.fingerprint, module.first.where
            if server.backend is None:  # a backend would need its broker: the contract is enough
                await server.startup()  # a Server[User] without an authenticate hook fails here
                await server.shutdown()


@pytest.fixture(scope="module")
def mypy_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config with nothing but ``[mypy]`` (the project's does not apply to a reader's module) and a
    cache shared by this file's runs: the later runs reuse what the first learnt about the libraries."""
    root = tmp_path_factory.mktemp("mypy")
    config = root / "mypy.ini"
    config.write_text("[mypy]\n")
    return config, root / "cache"


def mypy_errors(modules: list[Module], directory: Path, dirs: tuple[Path, Path]) -> list[str]:
    """mypy --strict over the modules, each in a file of its own; the errors, placed in the docs."""
    config, cache = dirs
    places: dict[str, list[str | None]] = {}
    for module in modules:
        source, places[f"{module.name}.py"] = module.source()
        (directory / f"{module.name}.py").write_text(source)
    stdout, stderr, _ = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(cache),
            "--no-pretty",
            "--no-error-summary",
            *(str(directory / name) for name in places),
        ]
    )
    assert not stderr, stderr
    errors = []
    for line in stdout.splitlines():
        match = re.match(r"^(?:.*/)?(?P<file>[^/:]+\.py):(?P<line>\d+): (?P<rest>.*)$", line)
        if match is None or match["file"] not in places:
            errors.append(line)
            continue
        lines = places[match["file"]]
        number = int(match["line"])
        place = lines[number - 1] if number <= len(lines) else None
        errors.append(f"{place or match['file']}: {match['rest']}")
    return [error for error in errors if ": note: " not in error]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("doc", documents_with("python"), ids=doc_id)
def test_every_python_block_type_checks(doc: Path, tmp_path: Path, mypy_dirs: tuple[Path, Path]) -> None:
    errors = mypy_errors(python_modules(doc), tmp_path, mypy_dirs)
    assert not errors, "mypy --strict:\n" + "\n".join(errors)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_type_check_places_an_error_in_the_docs(tmp_path: Path, mypy_dirs: tuple[Path, Path]) -> None:
    doc = tmp_path / "broken.md"
    doc.write_text("Text.\n\n```python\nx: int = 1\n```\n\n<!-- continues -->\n```python\ny: str = x\n```\n")
    modules = python_modules(doc)
    assert [len(module.blocks) for module in modules] == [2]
    (tmp_path / "out").mkdir()
    errors = mypy_errors(modules, tmp_path / "out", mypy_dirs)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{doc}:9: error: Incompatible types in assignment"), errors


# --- blocks that show a file ---------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_blocks_that_show_a_file_equal_it_and_show_all_of_it(doc: Path) -> None:
    shown: dict[Path, list[str | None]] = {}
    for block in read_blocks(doc):
        check_directives(block)
        target = shown_file(block)
        if target is None:
            continue
        path, region = target
        assert path.is_file(), f"{block.where}: {path} does not exist"
        expected = path.read_text() if region is None else regions(path).get(region)
        assert expected is not None, f"{block.where}: {path.relative_to(ROOT)} has no region {region!r}"
        assert block.code.strip("\n") == expected.strip("\n"), (
            f"{block.where} differs from {path.relative_to(ROOT)}{'#' + region if region else ''}"
        )
        shown.setdefault(path, []).append(region)
    for path, names in shown.items():
        # Nothing of the file is hidden from the reader who copies the blocks in order.
        expected_names: list[str | None] = [None] if None in names else list(regions(path))
        assert names == expected_names, (
            f"{doc_id(doc)} shows {names} of {path.relative_to(ROOT)}: {expected_names}"
        )


def test_the_tutorial_shows_its_code_from_the_files() -> None:
    blocks = read_blocks(ROOT / "docs" / "tutorial.md")
    files = {target[0].relative_to(ROOT).as_posix() for b in blocks if (target := shown_file(b))}
    assert {"examples/tutorial/app.py", "examples/tutorial/web/main.ts"} <= files
    for block in blocks:
        if block.lang not in SHELL_LANGUAGES:
            assert shown_file(block) is not None, f"{block.where}: a tutorial block must show a file"


def test_a_block_that_differs_from_its_file_fails(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- file: examples/tutorial/app.py#state -->\n```python\nsessions = {}\n```\n")
    with pytest.raises(AssertionError, match=re.escape("differs from examples/tutorial/app.py#state")):
        test_blocks_that_show_a_file_equal_it_and_show_all_of_it(doc)
    doc.write_text(
        "<!-- file: examples/tutorial/app.py#state -->\n```python\n"
        + regions(ROOT / "examples" / "tutorial" / "app.py")["state"]
        + "```\n"
    )
    with pytest.raises(AssertionError, match=r"shows \['state'\] of examples/tutorial/app.py"):
        test_blocks_that_show_a_file_equal_it_and_show_all_of_it(doc)
    doc.write_text("<!-- continue -->\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="unknown directive 'continue'"):
        python_modules(doc)


# --- TypeScript ------------------------------------------------------------------------------------------


def tool(path: Path | str, what: str) -> str:
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{what} is missing ({path}); run `make setup` (it runs npm ci in clients/js)")
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("doc", documents_with("ts"), ids=doc_id)
def test_every_typescript_block_compiles_against_the_client_of_its_server(
    doc: Path, tmp_path: Path, loaded_modules: list[str]
) -> None:
    modules = python_modules(doc)
    groups: dict[int, list[Block]] = {}
    for block in read_blocks(doc):
        if block.lang != "ts":
            continue
        before = [m for m in modules if any(b.line < block.line for b in m.blocks)]
        assert before, f"{block.where}: no Python block before it defines its server"
        server_module = max(before, key=lambda m: max(b.line for b in m.blocks if b.line < block.line))
        groups.setdefault(modules.index(server_module), []).append(block)
    for index, ts_blocks in groups.items():
        module = modules[index]
        assert module.runs, f"{module.first.where}: its TypeScript needs its server, but it does not run"
        loaded_modules.append(module.name)
        servers = servers_of(import_module(module, tmp_path))
        assert len(servers) == 1, f"{module.first.where}: {len(servers)} servers for the TypeScript after it"
        directory = tmp_path / f"ts_{index}"
        write(directory / "generated", generate(servers[0].contract, "ts", doc_id(doc)))
        shutil.copy(TS_BASE_CONFIG, directory)
        names = []
        for block in ts_blocks:
            names.append(f"line_{block.line}.ts")
            (directory / names[-1]).write_text(block.code)
        (directory / "tsconfig.json").write_text(
            json.dumps({"extends": "./tsconfig.base.json", "files": names})
        )
        done = subprocess.run(
            [
                tool(TSC, "TypeScript (clients/js/node_modules/.bin/tsc)"),
                "-p",
                "tsconfig.json",
                "--pretty",
                "false",
            ],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = re.sub(
            r"line_(\d+)\.ts", lambda m: f"{doc_id(doc)} (block at line {m[1]})", done.stdout + done.stderr
        )
        assert (done.returncode, output) == (0, ""), output


# --- shell commands ------------------------------------------------------------------------------------


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block: lines continued with a backslash joined, comments dropped, and
    split at ``&&``, ``||``, ``;`` and ``|``."""
    commands: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|"):
                commands.append(command)
                command = []
            else:
                command.append(token)
        if command:
            commands.append(command)
    return [command for command in commands if command]


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def check_command(words: list[str]) -> str | None:
    """Fail unless the command parses; returns the ``typed-ss`` subcommand it uses, if any."""
    environment: dict[str, str] = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        environment[name] = value
    program, args = words[0], words[1:]
    if program in ("python", "python3") and args[:2] == ["-m", "typed_ss"]:
        program, args = "typed-ss", args[2:]
    if program == "typed-ss":
        return check_typed_ss(args)
    if program == "uvicorn":
        check_uvicorn(args)
    elif program == "make":
        check_make(args, environment)
    elif program in ("python", "python3"):
        assert args[:2] == ["-m", "venv"], f"no check for `{shlex.join(words)}`"
    elif program == "pip":
        check_pip(args)
    elif program == "npm":
        check_npm(args)
    elif program == "npx":
        assert args, "npx runs nothing"
        assert (JS_CLIENT / "node_modules" / ".bin" / args[0]).exists(), f"npx: no {args[0]} in clients/js"
    else:
        assert program in NOT_RUN, f"no check for `{program}`: add one to tests/test_docs.py, or to NOT_RUN"
    return None


def parse_click(command: click.Command, name: str, args: list[str], parent: click.Context | None) -> None:
    try:
        command.make_context(name, list(args), parent=parent)
    except click.exceptions.Exit as exc:  # --help, --version
        if exc.exit_code != 0:
            raise AssertionError(f"`{name} {shlex.join(args)}` exits with {exc.exit_code}") from None
    except click.ClickException as exc:
        raise AssertionError(f"`{name} {shlex.join(args)}`: {exc.format_message()}") from None


def check_typed_ss(args: list[str]) -> str | None:
    if not args or args[0].startswith("-"):
        parse_click(typed_ss_cli, "typed-ss", args, None)
        return None
    parent = click.Context(typed_ss_cli, info_name="typed-ss")
    subcommand = typed_ss_cli.get_command(parent, args[0])
    assert subcommand is not None, f"typed-ss has no command {args[0]!r}"
    parse_click(subcommand, args[0], args[1:], parent)
    return args[0]


def check_uvicorn(args: list[str]) -> None:
    parse_click(uvicorn_cli, "uvicorn", args, None)
    for option in ("--http", "--ws", "--loop"):
        for position, word in enumerate(args[:-1]):
            if word == option and ":" in args[position + 1]:
                import_from_string(args[position + 1])  # what uvicorn does with it when it starts


def check_make(args: list[str], environment: dict[str, str]) -> None:
    # -n prints what would run without running it; an unknown target or variable syntax fails.
    done = subprocess.run(
        ["make", "-n", *args],
        cwd=ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"`make {shlex.join(args)}`: {done.stderr}"


def check_pip(args: list[str]) -> None:
    assert args[:1] == ["install"], f"no check for `pip {shlex.join(args)}`"
    for requirement in args[1:]:
        assert not requirement.startswith("-"), f"no check for pip's {requirement}"
        match = re.fullmatch(r"(?P<name>[\w.-]+)(?:\[(?P<extras>[\w,-]+)\])?(?:[<>=!~].*)?", requirement)
        assert match is not None, f"pip install {requirement}: not a requirement"
        try:
            metadata = importlib.metadata.metadata(match["name"])
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"pip install {requirement}: no such package here") from None
        for extra in (match["extras"] or "").split(","):
            if extra:
                assert extra in metadata.get_all("Provides-Extra", []), (
                    f"{match['name']} has no extra {extra}"
                )


def check_npm(args: list[str]) -> None:
    assert args[:1] == ["install"], f"no check for `npm {shlex.join(args)}`"
    own_name = json.loads((JS_CLIENT / "package.json").read_text())["name"]
    for package in args[1:]:
        if package in ("--save-dev", "-D"):
            continue
        assert package == own_name or (JS_CLIENT / "node_modules" / package / "package.json").is_file(), (
            f"npm install {package}: neither this repository's client ({own_name}) nor a package it uses"
        )


def inline_commands(doc: Path) -> list[list[str]]:
    """The inline code spans of ``doc`` that are ``make``, ``uvicorn`` or ``typed-ss`` commands."""
    spans = re.findall(r"`((?:make|uvicorn|typed-ss) [^`]+)`", prose(doc))
    return [shlex.split(span) for span in spans]


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_shell_command_parses(doc: Path) -> None:
    subcommands: set[str] = set()
    for block in read_blocks(doc):
        if block.lang in SHELL_LANGUAGES:
            for words in shell_commands(block.code):
                try:
                    used = check_command(list(words))
                except AssertionError as exc:
                    raise AssertionError(f"{block.where}: {exc}") from None
                if used is not None:
                    subcommands.add(used)
    for words in inline_commands(doc):
        if words[0] == "typed-ss":
            # An inline span often names a command without its arguments: the subcommand must exist.
            if len(words) > 1 and not words[1].startswith("-"):
                parent = click.Context(typed_ss_cli, info_name="typed-ss")
                assert typed_ss_cli.get_command(parent, words[1]) is not None, (
                    f"{doc_id(doc)}: `{shlex.join(words)}`"
                )
                subcommands.add(words[1])
        else:
            try:
                check_command(list(words))
            except AssertionError as exc:
                raise AssertionError(f"{doc_id(doc)}: {exc}") from None
    # The installed command runs, as the reader will run it.
    typed_ss = Path(sys.executable).parent / "typed-ss"
    for subcommand in sorted(subcommands):
        done = subprocess.run([typed_ss, subcommand, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("typed-ss gen-client app:ss --out web --langs ts", "No such option '--langs'"),
        ("typed-ss gen-client app:ss", "Missing option '--out'"),
        ("typed-ss gen-client app:ss --out web --lang go", "'go' is not one of"),
        ("typed-ss start app:app", "typed-ss has no command 'start'"),
        ("uvicorn app:app --ws-max-sizes 1", "No such option '--ws-max-sizes'"),
        ("uvicorn app:app --ws typed_ss.uvicorn_protocols:WebSocketProtocols", "WebSocketProtocols"),
        ("make no-such-target", "make no-such-target"),
        ("pip install typed-ss[no-such-extra]", "typed-ss has no extra no-such-extra"),
        ("npm install left-pad", "npm install left-pad"),
        ("rm -rf build", "no check for `rm`"),
    ],
)
def test_a_command_that_does_not_work_fails(command: str, error: str) -> None:
    (words,) = shell_commands(command)
    with pytest.raises(Exception, match=re.escape(error)):
        check_command(words)


def test_shell_blocks_split_into_commands() -> None:
    code = "A=1 make test   # a comment\nmkdir -p x && cd x\nuvicorn app:app \\\n    --port 1\n"
    assert shell_commands(code) == [
        ["A=1", "make", "test"],
        ["mkdir", "-p", "x"],
        ["cd", "x"],
        ["uvicorn", "app:app", "--port", "1"],
    ]


def test_the_documents_are_all_here() -> None:
    assert ROOT / "docs" / "tutorial.md" in DOCS
    assert {doc_id(doc) for doc in documents_with("python")} >= {
        "README.md",
        "docs/tutorial.md",
        "docs/codegen.md",
    }
