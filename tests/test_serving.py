"""``typed_ss.run``'s preparations: the open-files limit that ``max_connections`` needs."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import logging, resource, sys
from typed_ss.serving import ensure_file_limit
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
print(ensure_file_limit(int(sys.argv[3])))
"""


def check(soft: int, hard: int, max_connections: int) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(soft), str(hard), str(max_connections)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout), done.stderr


def test_the_soft_open_files_limit_is_raised_to_what_max_connections_needs() -> None:
    limit, log = check(512, 4096, 1_000)
    assert limit == 1_000 + 256
    assert log == ""


def test_a_hard_limit_too_low_for_max_connections_is_reported() -> None:
    limit, log = check(512, 600, 1_000)
    assert limit == 600
    assert "max_connections=1000 needs about 1256" in log
    assert log.startswith("WARNING")


def test_a_limit_that_suffices_is_left_alone() -> None:
    limit, log = check(2048, 4096, 1_000)
    assert (limit, log) == (2048, "")
