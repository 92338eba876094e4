"""CPU time and memory of processes: psutil when installed (the bench group), else Linux's /proc.

The fallback exists so that the harness's own smoke test runs under ``make test``, which does not
install the bench group; the recorded runs always use psutil.
"""

from __future__ import annotations

import importlib.util
import os

__all__ = ["HAVE_PSUTIL", "cpu_seconds", "cpu_split", "rss_bytes", "system_busy_seconds"]

HAVE_PSUTIL = importlib.util.find_spec("psutil") is not None

if HAVE_PSUTIL:
    import psutil


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process ``pid`` has used so far (its children excluded)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """The user and the system (kernel) CPU seconds the process ``pid`` has used so far."""
    if HAVE_PSUTIL:
        times = psutil.Process(pid).cpu_times()
        return float(times.user), float(times.system)
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may contain spaces; it is closed by the last ')'.
        fields = stat.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime and stime, fields 14 and 15


def rss_bytes(pid: int) -> int:
    """The resident set size of the process ``pid``."""
    if HAVE_PSUTIL:
        return int(psutil.Process(pid).memory_info().rss)
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def system_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all cores), for other tenants' load."""
    if HAVE_PSUTIL:
        times = psutil.cpu_times()
        return float(times.user + times.nice + times.system + times.irq + times.softirq + times.steal)
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
