"""The ``bridge`` console script (pyproject.toml ``[project.scripts]``).

Everything goes to the lazy click group of ``bridge.commands.cli`` — except the one hot call: AWS SDKs run
``bridge credential-process --url U --role R [--duration N] [--recheck S]`` on every credential
refresh, and nearly always the local cache still holds fresh credentials (that the bridge said, within
the recheck bound, the login still holds). That case is recognised here with a
plain look at argv and answered from the cache before click (~25 ms of imports, more than Python's
own start-up) is loaded. Anything else — ``--help``, another option, a missing ``--role``, a cache
miss, an error — falls through to click, which does the real work and prints the real messages.
tests/unit/test_cli_lazy.py holds the imports; bench/bench_cli_startup.py measures the time.
"""

from __future__ import annotations

import sys

HOT_OPTIONS = ("--url", "--role", "--duration", "--recheck")


def _hot_args(args: list[str]) -> dict[str, str] | None:
    """``--url``/``--role``/``--duration``/``--recheck`` (``--opt value`` or ``--opt=value``, each at most
    once), ``--role`` given; None for anything else."""
    seen: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in HOT_OPTIONS or name in seen:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            i += 1
            value = args[i]
        seen[name] = value
        i += 1
    if not seen.get("--role") or not seen.get("--duration", "1").isdigit() or not seen.get("--recheck", "1").isdigit():
        return None
    return seen


def _credential_process_from_cache(args: list[str]) -> bool:
    """Print cached credential_process JSON when argv is the plain form and the cache is fresh."""
    opts = _hot_args(args)
    if opts is None:
        return False
    import json  # loaded by bridge.client.core anyway

    from bridge.client import core as client

    try:
        url = client.resolve_url(opts.get("--url"))
        duration = int(opts["--duration"]) if "--duration" in opts else None
        doc = client.cached_credentials(url, opts["--role"], duration, client.recheck_seconds(opts.get("--recheck")))
        if doc is None:
            return False
        line = json.dumps(client.credential_process_doc(doc)) + "\n"
    except (client.ClientError, KeyError, TypeError, ValueError):
        return False  # click's path reports it properly
    sys.stdout.write(line)
    sys.stdout.flush()
    return True


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["credential-process"] and _credential_process_from_cache(args[1:]):
        return
    from bridge.commands.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
