"""Generate the gRPC backend's Python code and its typed stubs from proto/ (``make proto``).

    python scripts/gen_proto.py [--out DIR]

Runs grpcio-tools' protoc with the mypy-protobuf plugins, then moves the four files into the package
(``typed_ss/backends/_grpc/`` unless ``--out`` says otherwise). The proto file's path,
``typed_ss/multihome/v1/``, is not a Python package here (``typed_ss.multihome`` is a module), so
the generated imports are rewritten to ``typed_ss.backends._grpc``. tests/backends/test_grpc_proto.py
runs this into a temporary directory and checks the committed files are what it generates.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO = "typed_ss/multihome/v1/multihome.proto"
SOURCE_PACKAGE = "typed_ss.multihome.v1"
TARGET_PACKAGE = "typed_ss.backends._grpc"
TARGET = ROOT / "typed_ss" / "backends" / "_grpc"
FILES = ["multihome_pb2.py", "multihome_pb2.pyi", "multihome_pb2_grpc.py", "multihome_pb2_grpc.pyi"]


def generate(out: Path) -> None:
    """Write the four generated files into ``out``."""
    bin_dir = Path(sys.executable).parent  # protoc-gen-mypy and protoc-gen-mypy_grpc live here
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                f"--mypy_out={tmp}",
                f"--mypy_grpc_out={tmp}",
                PROTO,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(f"protoc failed:\n{done.stdout}{done.stderr}")
        generated = Path(tmp) / Path(PROTO).parent
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            text = (generated / name).read_text()
            text = text.replace(f"from {SOURCE_PACKAGE} import", f"from {TARGET_PACKAGE} import")
            text = text.replace(f"'{SOURCE_PACKAGE}.multihome_pb2'", f"'{TARGET_PACKAGE}.multihome_pb2'")
            (out / name).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
