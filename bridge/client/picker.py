"""A small interactive list picker for the terminal: type to filter, arrow keys to move, Enter to pick.

Standard library only (termios/tty, POSIX). The state machine (:class:`Picker`) is pure and tested
on its own; :func:`pick` drives it from a terminal in raw mode and always restores the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

UP, DOWN, ENTER, BACKSPACE, CANCEL, CLEAR = "<up>", "<down>", "<enter>", "<backspace>", "<cancel>", "<clear>"
_KEYS = {"\r": ENTER, "\n": ENTER, "\x7f": BACKSPACE, "\x08": BACKSPACE, "\x03": CANCEL, "\x04": CANCEL,
         "\x10": UP, "\x0e": DOWN, "\x15": CLEAR}  # ^P/^N as in readline, ^U clears the filter
_ESCAPES = {"A": UP, "B": DOWN}
VISIBLE = 10


class Cancelled(Exception):
    """The user left the picker (Esc, Ctrl-C, Ctrl-D)."""


def keys(text: str) -> Iterator[str]:
    """The keys in what a raw terminal sent: printable characters as themselves, the rest as names.
    Escape sequences (``ESC [ A``, ``ESC O B``, ``ESC [ 1 ; 5 A``) are read whole; unknown ones are dropped."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            if i + 1 < len(text) and text[i + 1] in "[O":
                j = i + 2
                while j < len(text) and not (text[j].isalpha() or text[j] == "~"):
                    j += 1
                if j < len(text) and text[j] in _ESCAPES:
                    yield _ESCAPES[text[j]]
                i = j + 1
                continue
            yield CANCEL  # Esc alone
        elif ch in _KEYS:
            yield _KEYS[ch]
        elif ch.isprintable():
            yield ch
        i += 1


@dataclass
class Picker:
    """Rows to choose from, a filter (every word must appear, any case) and a cursor in the matches."""

    rows: list[str]
    query: str = ""
    cursor: int = 0
    matches: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._filter()

    def _filter(self) -> None:
        words = self.query.lower().split()
        self.matches = [i for i, row in enumerate(self.rows) if all(w in row.lower() for w in words)]
        self.cursor = min(self.cursor, max(len(self.matches) - 1, 0))

    def press(self, key: str) -> int | None:
        """Apply one key; the chosen row's index on Enter (with a match), else None. Raises Cancelled."""
        if key == CANCEL:
            raise Cancelled
        if key == ENTER:
            return self.matches[self.cursor] if self.matches else None
        if key == UP:
            self.cursor = (self.cursor - 1) % len(self.matches) if self.matches else 0
        elif key == DOWN:
            self.cursor = (self.cursor + 1) % len(self.matches) if self.matches else 0
        elif key == BACKSPACE:
            self.query = self.query[:-1]
            self._filter()
        elif key == CLEAR:
            self.query = ""
            self._filter()
        elif len(key) == 1:
            self.query += key
            self.cursor = 0
            self._filter()
        return None

    def lines(self, title: str, width: int = 80) -> list[str]:
        """What to draw: the title with the filter, up to VISIBLE matches around the cursor, a count."""
        first = max(0, min(self.cursor - VISIBLE // 2, len(self.matches) - VISIBLE))
        shown = self.matches[first:first + VISIBLE]
        out = [f"{title} {self.query}"]
        for n, i in enumerate(shown, start=first):
            out.append(("> " if n == self.cursor else "  ") + self.rows[i])
        out.append(f"  ({len(self.matches)} of {len(self.rows)}; type to filter, ↑/↓, Enter; Esc cancels)"
                   if self.matches else f"  (nothing matches {self.query!r}; Backspace to widen)")
        return [line[: max(width - 1, 10)] for line in out]


def pick(rows: list[str], title: str, fd_in: int, out: TextIO) -> int:
    """Let the user choose one of ``rows`` on the terminal ``fd_in``/``out``; its index. Raises Cancelled."""
    import shutil
    import termios
    import tty

    state = Picker(rows)
    saved = termios.tcgetattr(fd_in)

    def draw(lines: list[str]) -> None:
        # The cursor waits on the first (filter) line: clear from there down, draw, go back up to it.
        out.write("\r\x1b[J" + "\r\n".join(lines))
        out.write((f"\r\x1b[{len(lines) - 1}A" if len(lines) > 1 else "\r") + f"\x1b[{len(lines[0])}C")
        out.flush()

    try:
        tty.setraw(fd_in)
        while True:
            draw(state.lines(title, shutil.get_terminal_size().columns))
            data = os.read(fd_in, 1024)
            if not data:
                raise Cancelled
            for key in keys(data.decode("utf-8", errors="ignore")):
                chosen = state.press(key)
                if chosen is not None:
                    return chosen
    finally:
        out.write("\r" + "\x1b[J")  # leave no picker behind
        out.flush()
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
