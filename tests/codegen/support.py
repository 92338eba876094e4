"""Paths and helpers shared by the generator's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from typed_ss.codegen import Lang, generate
from typed_ss.codegen.files import write

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
JS_CLIENT = ROOT / "clients" / "js"
TSC = JS_CLIENT / "node_modules" / ".bin" / "tsc"
APP = "tests.codegen.app:ss"


def generate_app(directory: Path, lang: Lang) -> Path:
    """Generate the client of tests/codegen/app.py into ``directory``; returns it."""
    from tests.codegen.app import ss

    write(directory, generate(ss.contract, lang, APP))
    return directory


def tool(path: Path | str, what: str) -> str:
    """The path of a tool the tests need; fails (never skips) with how to get it."""
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{what} is missing ({path}); run `make setup` (it runs npm ci in clients/js)")
    return found
