"""The ``bridge`` console script (pyproject.toml ``[project.scripts]``): the lazy group of ``bridge.cli``,
which imports a command's module only when that command runs."""

from __future__ import annotations

from bridge.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
