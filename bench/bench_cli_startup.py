"""CLI start-up: `bridge credential-process --help` (what an AWS SDK pays, minus the work, on every
credential refresh) against `bridge --help` (every command loaded) and `python -c pass` (the floor),
measured in the same run: each is a fresh subprocess timed with ``time.perf_counter``, run a few
times in turn after one warm-up round; the median counts.

The ``bridge`` command is started the way its console script starts it (``bridge.entry:main``), from
this checkout.

    .venv/bin/python bench/bench_cli_startup.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BRIDGE = [sys.executable, "-c", "import sys; from bridge.entry import main; sys.argv[0] = 'bridge'; sys.exit(main())"]
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bridge credential-process --help": [*BRIDGE, "credential-process", "--help"],
    "bridge --help": [*BRIDGE, "--help"],
}


def run_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, timeout=120, check=False)  # noqa: S603
    elapsed = (time.perf_counter() - start) * 1000
    if out.returncode != 0:
        sys.exit(f"{argv[3:] or argv} failed ({out.returncode}):\n{out.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs of each command (after one warm-up)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for argv in CASES.values():  # warm-up: bytecode caches, page cache
        run_once(argv, env)
    for _ in range(args.repeat):  # interleaved, so background load hits every case alike
        for name, argv in CASES.items():
            times[name].append(run_once(argv, env))
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpu(s), "
          f"{args.repeat} runs each, median (min-max)")
    for name, ts in times.items():
        print(f"{name:34s} {statistics.median(ts):7.1f} ms  ({min(ts):.1f}-{max(ts):.1f})")
    python = statistics.median(times["python -c pass"])
    cp = statistics.median(times["bridge credential-process --help"])
    full = statistics.median(times["bridge --help"])
    print(f"BENCH cli_help_startup {full:.1f} ms")
    print(f"BENCH cli_credential_process_startup {cp:.1f} ms")
    print(f"BENCH cli_startup_ratio_vs_python {cp / python:.2f} x")


if __name__ == "__main__":
    main()
