"""`python -m scripts.generate_changes`: the change generator's command (`scripts.changes.cli`),
under the name the Makefile, the README and the tests call it by."""

from __future__ import annotations

import sys

from scripts.changes.cli import main

if __name__ == "__main__":
    sys.exit(main())
