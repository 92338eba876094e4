"""CPU time and memory of processes, from Linux's /proc (psutil for the split and memory when installed).

A process's total CPU time is read in nanoseconds: the first field of each of its threads'
``/proc/<pid>/task/<tid>/schedstat`` (the scheduler's time on CPU, user and kernel alike), summed over
the threads (the Go server runs several). Its user/kernel split exists only in clock ticks
(``utime``/``stime`` of ``/proc/<pid>/stat``, 10 ms each at the usual ``USER_HZ`` of 100), too coarse
for a total: an echo at one connection takes a few microseconds. Where schedstat is missing (a kernel
without ``CONFIG_SCHED_INFO``), the total falls back to the ticks, and :func:`clocks` says so.

psutil (the bench group) reads the same ticks; the fallback to /proc exists so that the harness's own
smoke test runs under ``make test``, which does not install the bench group.
"""

from __future__ import annotations

import importlib.util
import os
import time

__all__ = [
    "HAVE_PSUTIL",
    "HAVE_SCHEDSTAT",
    "clocks",
    "cpu_seconds",
    "cpu_split",
    "rss_bytes",
    "schedstat_ns",
    "system_busy_seconds",
]

HAVE_PSUTIL = importlib.util.find_spec("psutil") is not None
HAVE_SCHEDSTAT = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat")
"""Whether this kernel reports each thread's time on CPU in nanoseconds."""
TICK_MS = 1000 // os.sysconf("SC_CLK_TCK")
"""Milliseconds per clock tick of /proc/<pid>/stat's CPU times."""

if HAVE_PSUTIL:
    import psutil


def cpu_seconds(pid: int) -> float:
    """User plus kernel CPU seconds the process ``pid`` has used so far (its children excluded): from
    schedstat's nanoseconds, else from clock ticks."""
    if HAVE_SCHEDSTAT:
        return schedstat_ns(pid) / 1e9
    return sum(cpu_split(pid))


def schedstat_ns(pid: int) -> int:
    """Nanoseconds on CPU of every thread of the process ``pid`` so far. A thread that ended is no
    longer counted: a window over which one ends reads short by its time."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                total += int(schedstat.read().split(maxsplit=1)[0])
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return total


def cpu_split(pid: int) -> tuple[float, float]:
    """The user and the system (kernel) CPU seconds the process ``pid`` has used so far, in clock
    ticks."""
    if HAVE_PSUTIL:
        times = psutil.Process(pid).cpu_times()
        return float(times.user), float(times.system)
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may contain spaces; it is closed by the last ')'.
        fields = stat.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime and stime, fields 14 and 15


def clocks() -> dict[str, str]:
    """How each CPU figure is read here: the servers' totals, their kernel part, the load generator's."""
    ticks = f"{TICK_MS} ms clock ticks of /proc/<pid>/stat" + (" (psutil)" if HAVE_PSUTIL else "")
    fine = "nanoseconds from /proc/<pid>/task/*/schedstat"
    return {
        "server": fine if HAVE_SCHEDSTAT else f"{ticks} (no schedstat here: coarse)",
        "server_kernel": ticks,
        "client": f"nanoseconds from {time.get_clock_info('process_time').implementation}",
    }


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
