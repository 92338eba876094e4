"""The artefacts as a user gets them: ``make dist`` into a directory of the tests', the wheel installed
into a fresh venv outside the repository, and clients/js packed with ``npm pack`` and installed into a
scratch npm project. Module-scoped fixtures, shared by tests/test_packaging.py and
tests/test_installed.py (import the fixtures into a test module to use them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import typed_ss

__all__ = [
    "EXTRAS",
    "STEP_TIMEOUT",
    "Dist",
    "NpmProject",
    "Venv",
    "clean_env",
    "dist",
    "npm_project",
    "run",
    "venv",
]

ROOT = Path(__file__).resolve().parents[1]
JS_CLIENT = ROOT / "clients" / "js"
UV = ROOT / ".uv" / "bin" / "uv"
VERSION = typed_ss.__version__
EXTRAS = ("redis", "mongo", "grpc", "pydantic")
USER_PACKAGES = ("fastapi",)
"""What the venv gets besides typed-ss and its extras: what the tutorial's app imports."""

# Each subprocess is bounded. With uv's and npm's caches warm the whole module takes about 7 seconds in
# one process (make dist about 1, the venv under 1, each tsc run half a second).
STEP_TIMEOUT = 120


def run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its stdout, or a failure showing both outputs."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point a child at the repository or its venv,
    or hand it the jobserver of a `make` this test may run under."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    make_output: str


@dataclass(frozen=True)
class Venv:
    root: Path
    python: Path
    bin: Path
    work: Path
    """A directory outside the repository to run the venv's commands in."""

    def env(self) -> dict[str, str]:
        return clean_env(VIRTUAL_ENV=str(self.root), PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`make dist` (uv build, then twine check) into a directory of this test's. `-o` keeps make from
    reinstalling the repository's .venv, which the running suite is using."""
    out = tmp_path_factory.mktemp("dist")
    output = run(["make", "-s", "-o", ".venv/.installed", "dist", f"DIST={out}"], ROOT, clean_env())
    return Dist(
        wheel=out / f"typed_ss-{VERSION}-py3-none-any.whl",
        sdist=out / f"typed_ss-{VERSION}.tar.gz",
        make_output=output,
    )


@pytest.fixture(scope="module")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv outside the repository with the wheel and every extra, as a user installs it."""
    base = tmp_path_factory.mktemp("venv")
    root = base / "venv"
    run([UV, "venv", "--quiet", "--python", Path(sys.executable), root], base, clean_env())
    python = root / "bin" / "python"
    spec = f"{dist.wheel}[{','.join(EXTRAS)}]"
    constraints = ROOT / "constraints.txt"
    install: list[str | Path] = [UV, "pip", "install", "--quiet", "--python", python]
    run([*install, "--constraints", constraints, spec, *USER_PACKAGES], base, clean_env())
    work = base / "work"
    work.mkdir()
    return Venv(root=root, python=python, bin=root / "bin", work=work)


@dataclass(frozen=True)
class NpmProject:
    root: Path
    """A scratch npm project outside the repository, with the packed client installed."""
    packed: list[str]
    """The files `npm pack` put in the tarball."""


@pytest.fixture(scope="module")
def npm_project(tmp_path_factory: pytest.TempPathFactory) -> NpmProject:
    base = tmp_path_factory.mktemp("npm")
    [pack] = json.loads(run(["npm", "pack", "--json", "--pack-destination", base], JS_CLIENT, clean_env()))
    tarball = base / pack["filename"]
    assert tarball.is_file()
    root = base / "project"
    root.mkdir()
    (root / "package.json").write_text(json.dumps({"name": "scratch", "version": "0.0.0", "private": True}))
    # The package has no dependencies (checked below), so nothing is fetched: the install works offline.
    run(
        ["npm", "install", "--offline", "--ignore-scripts", "--no-audit", "--no-fund", tarball],
        root,
        clean_env(),
    )
    return NpmProject(root=root, packed=[entry["path"] for entry in pack["files"]])
