"""The gRPC multihome example's start.sh: certificates, a random key and three TLS nodes; casts cross."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import connect_client, free_ports

ROOT = Path(__file__).resolve().parent.parent
START_SH = ROOT / "examples" / "grpc_multihome" / "start.sh"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def private_keys_are_private(tmp: Path) -> bool:
    keys = list(tmp.glob("typed-ss-grpc.*/*.key"))
    return len(keys) == 3 and all(key.stat().st_mode & 0o077 == 0 for key in keys)


def work_directories(tmp: Path) -> list[Path]:
    return list(tmp.glob("typed-ss-grpc.*"))


@pytest.mark.timeout(90)
async def test_start_sh_runs_a_secured_three_node_mesh_and_stops_it(tmp_path: Path) -> None:
    ports = free_ports(3)
    pid_file = tmp_path / "pids"
    env = {**os.environ, "PID_FILE": str(pid_file), "MUTUAL": "1", "TMPDIR": str(tmp_path)}
    script = await asyncio.create_subprocess_exec(
        str(START_SH),
        *map(str, ports),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert script.stdout is not None
    output: list[str] = []
    try:
        while not output or "all nodes are up" not in output[-1]:
            line = (await asyncio.wait_for(script.stdout.readline(), 60)).decode()
            assert line, "start.sh ended early:\n" + "".join(output)
            output.append(line)
        assert "TLS and a shared key" in "".join(output)
        node_pids = [int(line.split()[1]) for line in pid_file.read_text().splitlines()]
        assert len(node_pids) == 3
        assert private_keys_are_private(tmp_path)
        urls = [f"ws://127.0.0.1:{port}" for port in ports]
        async with connect_client(urls[0]) as one, connect_client(urls[2]) as three:
            await three.send("join", "lobby")
            assert (await three.expect("status")).payload == "joined room: lobby"
            for kind, expected in (("text", "hi"), ("binary", b"hi"), ("json", {"data": "hi"})):
                for cast, target in (("broadcast", ""), ("roomcast", "lobby"), ("socketcast", three.id)):
                    await one.send(cast, json.dumps({"kind": kind, "data": "hi", "target": target}))
                    frame = await three.expect(f"{cast}-{kind}")
                    assert (frame.json() if kind == "json" else frame.payload) == expected
    finally:
        if script.returncode is None:
            os.kill(script.pid, signal.SIGTERM)
        await asyncio.wait_for(script.wait(), 30)
    assert script.returncode == 143
    assert not any(alive(pid) for pid in node_pids)
    assert not pid_file.exists()
    assert not work_directories(tmp_path)  # the certificates and keys are gone
