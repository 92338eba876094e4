"""The ``go`` server kind: a Go server of the sac-sock wire, built at bench time from ``go/main.go``.

The Go original (Sacrificial-Socket) is measured through a small server written here for the
benchmarks, ``benchmarks/go/main.go``: the original's wire and server shape (a reader per connection,
mutex-guarded writes, rooms and broadcasts written straight to each socket) on gorilla/websocket, the
original's WebSocket library, doing the work typed-ss's benchmark server does. None of the original
library's code is in this repository. It is built with Debian's Go (``golang-go``) against Debian's
gorilla/websocket (``golang-github-gorilla-websocket-dev``, in ``/usr/share/gocode``), in GOPATH mode
with the module proxy off: nothing is downloaded. ``make bench`` installs both packages; where they are
missing (``make test`` does not install them) or the build fails, a run skips the kind and says why.

It serves as every other kind does: it binds an OS-picked port of 127.0.0.1, prints ``PORT <n>`` and
stops on SIGINT. It runs with ``GOMAXPROCS=1`` (unless the environment sets ``GOMAXPROCS``): one core,
like every Python server here, and on these 2-core machines, where the load generator needs the other
core, its fastest setting (`/work/shared/reference/performance.md`: 200,670 echo messages per second
against 166,027 with 2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "GO_PACKAGES",
    "SOURCE",
    "GoUnavailable",
    "binary_path",
    "build",
    "command",
    "unavailable",
    "versions",
]

SOURCE = Path(__file__).resolve().parent / "go" / "main.go"
"""The Go server's source (package main, one file)."""
GO_PACKAGES = ("golang-go", "golang-github-gorilla-websocket-dev")
"""The Debian packages it is built from (the Makefile's ``BENCH_SYSTEM_PACKAGES`` lists them)."""
DEBIAN_GOPATH = Path("/usr/share/gocode")
"""Where Debian's Go library packages put their sources (a GOPATH)."""
GORILLA = "github.com/gorilla/websocket"
GOMAXPROCS = "1"
INSTALL_HINT = "`make bench` installs " + " and ".join(GO_PACKAGES)


class GoUnavailable(RuntimeError):
    """The Go server cannot be built here; the message says why."""


def unavailable() -> str | None:
    """Why the Go server cannot be built here (``None``: it can be tried)."""
    if shutil.which("go") is None:
        return f"go is not installed ({INSTALL_HINT})"
    if not (DEBIAN_GOPATH / "src" / GORILLA).is_dir():
        return f"gorilla/websocket is not in {DEBIAN_GOPATH} ({INSTALL_HINT})"
    return None


def _env(workdir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "GO111MODULE": "off",  # GOPATH mode: imports come from Debian's GOPATH, no go.mod, no proxy
        "GOPATH": str(DEBIAN_GOPATH),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    if not (os.environ.get("GOCACHE") or os.environ.get("XDG_CACHE_HOME") or os.environ.get("HOME")):
        env["GOCACHE"] = str(workdir / "gocache")  # else Go's own build cache
    return env


def binary_path(workdir: Path) -> Path:
    """Where :func:`build` puts the server's binary in ``workdir``."""
    return workdir / "go-server" / "sacsock-bench"


def build(workdir: Path) -> Path:
    """Build the Go server into ``workdir``; returns the binary, or raises :class:`GoUnavailable`."""
    reason = unavailable()
    if reason is not None:
        raise GoUnavailable(reason)
    out = binary_path(workdir)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SOURCE, out.parent / "main.go")
    try:
        done = subprocess.run(
            ["go", "build", "-o", out.name, "main.go"],
            cwd=out.parent,
            env=_env(workdir),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise GoUnavailable("go build took more than 300 s") from error
    if done.returncode != 0:
        raise GoUnavailable(f"go build failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    return out


def command(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The command that serves the built Go server, and its environment (``GOMAXPROCS``)."""
    return [str(binary_path(workdir))], {**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", GOMAXPROCS)}


def versions() -> dict[str, str]:
    """Go's version and gorilla/websocket's Debian package version (empty where not installed)."""
    found: dict[str, str] = {}
    if shutil.which("go") is not None:
        done = subprocess.run(["go", "version"], capture_output=True, text=True, check=False, timeout=30)
        found["go"] = done.stdout.strip()
    if shutil.which("dpkg-query") is not None:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", GO_PACKAGES[1]],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if done.returncode == 0 and done.stdout:
            found["gorilla/websocket"] = done.stdout.strip()
    found["GOMAXPROCS"] = os.environ.get("GOMAXPROCS", GOMAXPROCS)
    return found
