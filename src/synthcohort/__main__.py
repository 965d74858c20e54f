"""Entry point for ``python -m synthcohort``."""

from __future__ import annotations

from synthcohort.cli.main import main

if __name__ == "__main__":
    main()
