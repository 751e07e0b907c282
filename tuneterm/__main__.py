"""``python -m tuneterm``: the same program as the ``tuneterm`` console script."""

from __future__ import annotations

from tuneterm.main import main

if __name__ == "__main__":
    main()
