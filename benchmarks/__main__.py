"""Run the benchmark suite: ``python -m benchmarks quick|full`` (``make bench-quick`` / ``make bench``).

Prints the table with ratios and the targets on stdout (progress goes to stderr), and writes
``benchmarks/results/<mode>-<time>.json`` and ``.png`` (plus ``latest-<mode>.*`` copies).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import goserver, report
from benchmarks.run import ROOT, SCALE_BACKENDS, SCENARIOS, SIZES, run_suite
from benchmarks.servers import KINDS


def go_note(outcome: dict[str, object]) -> str:
    """What a run says about the Go original: measured beside typed-ss, or skipped and why."""
    skipped = outcome.get("skipped")
    if isinstance(skipped, dict) and "go" in skipped:
        return f"Go: not measured in this run: {skipped['go']}."
    kinds = outcome.get("kinds")
    if isinstance(kinds, list) and "go" in kinds:
        return (
            "Go: the sac-sock wire on gorilla/websocket (benchmarks/go/main.go, a server written for the "
            "benchmarks in the Go original's shape, not its code), built here with Debian's Go and "
            f"gorilla/websocket packages, GOMAXPROCS={goserver.versions()['GOMAXPROCS']}; no Redis "
            "backend, no callgrind count."
        )
    return "Go: not in this run's --kinds."


def cpu_clocks_note(clocks: dict[str, str]) -> str:
    """How the run read CPU time (:func:`benchmarks.procstat.clocks`)."""
    server, kernel, client = clocks["server"], clocks["server_kernel"], clocks["client"]
    return (
        f"CPU clocks: the servers' CPU (per message, in cores): {server}; their kernel part (the "
        f"'of which in the kernel' rows): {kernel}; the load generator's: {client}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(SIZES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="skip the scenarios on Redis: the two-instance one and presence",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="scenarios to run (default: all; callgrind counts echo messages and calls, and typed-ss's "
        "core alone)",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="servers to compare (default: all; reported in the order " + ", ".join(KINDS) + ")",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=SCALE_BACKENDS,
        default=list(SCALE_BACKENDS),
        help="the scale scenario's backends (default: all: " + ", ".join(SCALE_BACKENDS) + ")",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for a 1-minute load average below 0.5",
    )
    args = parser.parse_args(argv)
    kinds = tuple(kind for kind in KINDS if kind in args.kinds)
    sizes = SIZES[args.mode]
    scenarios = tuple(name for name in SCENARIOS if name in args.scenarios)
    backends = tuple(backend for backend in SCALE_BACKENDS if backend in args.backends)
    sizes = replace(sizes, kinds=kinds, scenarios=scenarios, scale_backends=backends)
    narrowed = "" if scenarios == SCENARIOS else f"; only {', '.join(scenarios)}"
    print(f"typed-ss benchmarks, {sizes.note}{narrowed}", file=sys.stderr, flush=True)

    outcome = run_suite(sizes, redis=not args.no_redis, wait_quiet=args.wait_quiet)
    outcome["environment"] = report.environment()
    outcome["targets"] = report.targets(outcome["medians"])
    outcome["go_origin"] = go_note(outcome)
    kinds = tuple(kind for kind in kinds if kind in outcome.get("kinds", kinds))

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"{sizes.name}-{stamp}.json"
    json_path.write_text(json.dumps(outcome, indent=2) + "\n")
    chart_path = args.out / f"{sizes.name}-{stamp}.png"
    title = f"typed-ss (on uvicorn; native) vs peers, {sizes.name} run, {time.strftime('%Y-%m-%d %H:%M')}"
    charted = report.write_chart(outcome["medians"], kinds, chart_path, title)
    shutil.copyfile(json_path, args.out / f"latest-{sizes.name}.json")
    if charted:
        shutil.copyfile(chart_path, args.out / f"latest-{sizes.name}.png")

    env = outcome["environment"]
    print(f"\n## typed-ss benchmarks ({sizes.note}{narrowed})\n")
    print(
        f"{env['machine']}; Python {env['python']}; load average {outcome['load_average_before']:.2f} "
        f"before, {outcome['load_average_after']:.2f} after; client {outcome['client_library']}; "
        f"{outcome['seconds']:.0f} s\n"
    )
    print(cpu_clocks_note(outcome["cpu_clocks"]) + "\n")
    print("\n".join(report.table(outcome["medians"], kinds)))
    scale = report.scale_table(outcome["medians"])
    if scale:
        print("\n### Scale-out: typed-ss native instances on each backend (scale scenario)\n")
        print("\n".join(scale))
        for phase, title in (("bc", "broadcasts"), ("rc", "roomcasts")):
            print(f"\nPer broker node (gRPC: per instance), {title}, net of the control plane:\n")
            print("\n".join(report.scale_node_table(outcome["medians"], phase)))
        if "redis-cluster" in report.scale_backends(outcome["medians"]):
            print(
                "\nOn Redis Cluster each instance publishes its broadcasts to one of 16 channels, picked "
                "at random when it starts: the masters' broadcast shares differ from one repetition to the "
                "next, and their medians need not add up (the JSON's runs have each repetition's)."
            )
    for backend, why in outcome.get("scale_skipped", {}).items():
        print(f"\nscale: not run on {backend}: {why}")
    print("\n### Targets (ratios from this run)\n")
    print("\n".join(report.target_lines(outcome["targets"], sizes.repetitions)))
    print(f"\n{outcome['go_origin']}\n")
    print(f"JSON: {json_path}")
    # Nothing to draw without a peer: typed-ss recovery is compared with typed-ss native only.
    unavailable = (
        "matplotlib is not installed"
        if importlib.util.find_spec("matplotlib") is None
        else "no peer in this run"
    )
    print(f"chart: {chart_path if charted else f'not drawn ({unavailable})'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
