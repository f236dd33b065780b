"""CLI start-up, measured side by side in one run: `python -c pass` (the floor), `bridge
credential-process` with credentials fresh in the local cache (what an AWS SDK waits for on almost
every credential refresh), `bridge credential-process --help`, and `bridge --help` (every command
loaded). Each is a fresh subprocess timed with ``time.perf_counter``, run a few times in turn after
one warm-up round; the median counts.

The ``bridge`` command is started the way its console script starts it (``bridge.__main__:main``), from
this checkout, with a temporary HOME/XDG_CACHE_HOME holding one fresh cached credential.

    .venv/bin/python bench/bench_cli_startup.py [--repeat 9]

The goal (tests/unit/test_cli_lazy.py holds the imports behind it): the warm-cache
`credential-process` costs at most 3 x `python -c pass`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BRIDGE = [sys.executable, "-c",
          "import sys; from bridge.__main__ import main; sys.argv[0] = 'bridge'; sys.exit(main())"]
URL, ROLE = "https://bridge.example.com", "arn:aws:iam::123456789012:role/Admin"
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bridge credential-process (cached)": [*BRIDGE, "credential-process", "--url", URL, "--role", ROLE],
    "bridge credential-process --help": [*BRIDGE, "credential-process", "--help"],
    "bridge --help": [*BRIDGE, "--help"],
}


def seed_cache(home: Path) -> None:
    """One credential fresh for an hour, where bridge.client._cache_path looks for it, which the bridge
    said a moment ago this login still holds (``CheckedAt``: no recheck on the measured runs)."""
    doc = {"Version": 1, "AccessKeyId": "ASIABENCH", "SecretAccessKey": "secret", "SessionToken": "token",
           "Expiration": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "CheckedAt": time.time()}
    key = hashlib.sha256(f"{URL}\x00{ROLE}\x00None".encode()).hexdigest()[:32]
    cache = home / "cache" / "federation-bridge"
    cache.mkdir(parents=True, mode=0o700)
    (cache / f"creds-{key}.json").write_text(json.dumps(doc))


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
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        seed_cache(home)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
               "XDG_CONFIG_HOME": str(home / "config")}
        env.pop("BRIDGE_URL", None)
        times: dict[str, list[float]] = {name: [] for name in CASES}
        for argv in CASES.values():  # warm-up: bytecode caches, page cache
            run_once(argv, env)
        for _ in range(args.repeat):  # interleaved, so background load hits every case alike
            for name, argv in CASES.items():
                times[name].append(run_once(argv, env))
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpu(s), "
          f"{args.repeat} runs each, median (min-max)")
    for name, ts in times.items():
        print(f"{name:36s} {statistics.median(ts):7.1f} ms  ({min(ts):.1f}-{max(ts):.1f})")
    python = statistics.median(times["python -c pass"])
    cached = statistics.median(times["bridge credential-process (cached)"])
    cp_help = statistics.median(times["bridge credential-process --help"])
    full = statistics.median(times["bridge --help"])
    print(f"BENCH cli_python_startup {python:.1f} ms")
    print(f"BENCH cli_help_startup {full:.1f} ms")
    print(f"BENCH cli_credential_process_help_startup {cp_help:.1f} ms")
    print(f"BENCH cli_credential_process_cached {cached:.1f} ms")
    print(f"BENCH cli_cached_ratio_vs_python {cached / python:.2f} x (goal <= 3)")


if __name__ == "__main__":
    main()
