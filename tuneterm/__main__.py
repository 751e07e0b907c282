from __future__ import annotations

from tuneterm.cli import main

if __name__ == "__main__":
    main()
