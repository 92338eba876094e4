"""The committed gRPC code is exactly what grpcio-tools and mypy-protobuf generate from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "typed_ss" / "backends" / "_grpc"
FILES = ["multihome_pb2.py", "multihome_pb2.pyi", "multihome_pb2_grpc.py", "multihome_pb2_grpc.pyi"]


@pytest.mark.timeout(60)
def test_regenerating_the_grpc_code_gives_no_diff(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--out", str(tmp_path)], cwd=ROOT, check=True, timeout=50
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (tmp_path / name).read_text() == (GENERATED / name).read_text(), (
            f"{name} is stale: run `make proto` and commit the result"
        )


def test_the_generated_code_imports_from_the_package() -> None:
    from typed_ss.backends._grpc import multihome_pb2, multihome_pb2_grpc

    assert multihome_pb2.Upstream.DESCRIPTOR.full_name == "typed_ss.multihome.v1.Upstream"
    assert multihome_pb2_grpc.MeshStub.__module__ == "typed_ss.backends._grpc.multihome_pb2_grpc"
