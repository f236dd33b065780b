"""The rules in force in this process, reloaded without a restart and without dropping sessions.

Under gunicorn every worker is its own process with its own ``RuleBook``, so reload works per
process, two ways:

- **file change**: on use, at most every ``mapping.reload_interval`` seconds, the config file and
  the rules file are ``stat``-ed; a changed size/mtime/inode reloads the mapping;
- **SIGHUP**: ``install_sighup`` makes the signal request a reload (deploy/gunicorn.conf.py
  installs it in each worker and makes the master forward its SIGHUP to the workers).

A reload that fails keeps the rules in force and logs every problem (``rules_reload_failed``);
the broken file is not retried until it changes again. Sessions live in Redis and are not
touched: their grants are re-evaluated with the new rules on their next request.

A reload must not wipe access by accident (an empty or truncated file parses fine), so a *valid*
rule set is still refused when it has no rules, or drops more than ``mapping.max_shrink`` of the
rules in force. The way to mean it is in the file itself: ``expected_rules: N`` (checked on every
load, so a truncated file fails it). The file is what every worker of every instance reads, so
this needs no coordination — unlike a flag on a signal, which reaches one instance only.

Failures are counted through ``on_failure(kind)`` (kind: invalid | error | empty | shrink) and
shown by ``status()`` (``/readyz``, the metrics); this module knows nothing of either.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.config import FileStamp, file_stamp
from bridge.domain.errors import ConfigError
from bridge.mapping import MappingSettings
from bridge.telemetry.logs import event

Stamps = dict[str, FileStamp]


def _now(paths: list[Path]) -> Stamps:
    return {str(p): file_stamp(p) for p in paths}


def _loaded(mapping: MappingSettings, paths: list[Path]) -> Stamps:
    """The stamps of ``paths`` as they were when ``mapping`` was read from them (now, if unknown)."""
    now = _now(paths)
    return {p: mapping.file_stamps.get(p, stamp) for p, stamp in now.items()}


def refusal(kept: int | None, new: MappingSettings) -> tuple[str, str] | None:
    """Why a valid ``new`` rule set must not replace ``kept`` rules in force: (kind, problem), or None.
    ``kept`` None = nothing to compare with (check-config): only an empty rule set is reported."""
    n = len(new.rules)
    if new.expected_rules is not None:
        return None  # the operator said how many rules there are, and the loader checked the file holds that many
    if n == 0 and kept != 0:
        return "empty", ("mapping: no rules: every user would lose every role "
                         "(to mean it, write expected_rules: 0 next to the rules)")
    if kept and (kept - n) / kept > new.max_shrink:
        return "shrink", (f"mapping: {n} rule(s) where {kept} are in force: dropping {(kept - n) / kept:.0%} is "
                          f"more than mapping.max_shrink ({new.max_shrink:.0%}) allows "
                          f"(to mean it, write expected_rules: {n} next to the rules)")
    return None


class RuleBook:
    """Holds the current ``MappingSettings``; ``mapping`` checks for changes on use."""

    def __init__(self, mapping: MappingSettings, *, loader: Callable[[], MappingSettings] | None = None,
                 files: Callable[[MappingSettings], list[Path]] = lambda m: [],
                 clock: Callable[[], float] = time.monotonic,
                 on_failure: Callable[[str], None] = lambda kind: None) -> None:
        self._mapping = mapping
        self._on_failure = on_failure
        self._loader = loader
        self._files = files
        self._clock = clock
        self._stamp = _loaded(mapping, files(mapping))
        self._next_check = clock() + mapping.reload_interval
        self._lock = threading.Lock()
        self._requested = False
        self.last_problems: list[str] = []
        self.last_failure: str | None = None  # kind of the last reload's failure; None once one succeeds
        # Told after each successful reload (the decision point ends the access requests the new rules no
        # longer back); a failing subscriber is logged and never undoes the reload.
        self.on_reload: list[Callable[[], None]] = []
        # Told of new rules before they are put in force, with the rules in force unchanged meanwhile: work
        # the first decision under them would otherwise do (AccessPoint.warm). A failing one is logged.
        self.on_load: list[Callable[[MappingSettings], None]] = []

    @property
    def mapping(self) -> MappingSettings:
        """The rules in force (reloaded first if their files changed or a reload was requested)."""
        self.maybe_reload()
        return self._mapping

    @property
    def current(self) -> MappingSettings:
        """The rules in force, without checking for changes (for work done at a reload itself)."""
        return self._mapping

    @property
    def version(self) -> str:
        return str(self.mapping.compiled.version)

    def status(self) -> dict[str, Any]:
        """What this process serves and whether its last reload failed (for /readyz and metrics; never
        reloads, so a probe stays fast). Problems name files, rules and counts; the first few only."""
        return {"version": str(self._mapping.compiled.version), "count": len(self._mapping.rules),
                "last_reload_failed": self.last_failure is not None, "failure": self.last_failure,
                "problems": [p[:300] for p in self.last_problems[:3]]}

    def request_reload(self) -> None:
        """Ask for a reload at the next use (safe to call from a signal handler)."""
        self._requested = True

    def maybe_reload(self) -> None:
        if self._loader is None or (not self._requested and self._clock() < self._next_check):
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread is reloading; this request uses the rules in force
        try:
            requested, self._requested = self._requested, False
            self._next_check = self._clock() + self._mapping.reload_interval
            stamp = _now(self._files(self._mapping))
            if requested or stamp != self._stamp:
                self._reload(stamp, "signal" if requested else "file_changed")
        finally:
            self._lock.release()

    def reload(self, reason: str = "requested") -> bool:
        """Reload now; True when the new rules are in force."""
        with self._lock:
            return self._reload(_now(self._files(self._mapping)), reason)

    def _reload(self, stamp: Stamps, reason: str) -> bool:
        assert self._loader is not None
        old = self._mapping
        started = time.monotonic()
        try:
            new = self._loader()
            version = new.compiled.version
        except ConfigError as e:
            self._fail(stamp, reason, "invalid", e.problems)
            return False
        except Exception as e:  # a bug must not take the rules in force down with it
            self._fail(stamp, reason, "error", [f"unexpected {type(e).__name__} while loading the rules"])
            return False
        if (refused := refusal(len(old.rules), new)) is not None:
            kind, problem = refused
            self._fail(stamp, reason, kind, [problem])
            return False
        for prepare in list(self.on_load):
            try:
                prepare(new)
            except Exception as e:  # noqa: BLE001 - preparing runs what a decision runs: it would fail there too
                self._fail(stamp, reason, "error", [f"unexpected {type(e).__name__} while preparing the rules"])
                return False
        self._mapping = new
        self._stamp = _loaded(new, self._files(new))
        self._next_check = self._clock() + new.reload_interval
        self.last_problems = []
        self.last_failure = None
        event("rules_reloaded", reason=reason, rules=len(new.rules), version=version,
              previous_version=old.compiled.version, ms=round((time.monotonic() - started) * 1000, 1))
        for subscriber in list(self.on_reload):
            try:
                subscriber()
            except Exception:  # noqa: BLE001 - the new rules are in force whatever a subscriber does
                logging.getLogger("bridge").exception("rules reload: on_reload subscriber failed")
        return True

    def _fail(self, stamp: Stamps, reason: str, kind: str, problems: list[str]) -> None:
        self._stamp = stamp  # do not retry the same broken files every interval
        self.last_problems = list(problems)
        self.last_failure = kind
        event("rules_reload_failed", logging.ERROR, reason=reason, failure=kind,
              kept_version=self._mapping.compiled.version, kept_rules=len(self._mapping.rules),
              count=len(problems), problems=problems[:50])
        try:
            self._on_failure(kind)
        except Exception:  # noqa: BLE001 - counting a failure must not break the rules in force
            logging.getLogger("bridge").exception("rules reload: on_failure callback failed")


def install_sighup(book: RuleBook) -> None:
    """SIGHUP → reload this process's rules (in a thread: the signal handler must return quickly)."""
    def handler(signum: int, frame: object) -> None:
        book.request_reload()
        threading.Thread(target=book.maybe_reload, name="rules-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, handler)
