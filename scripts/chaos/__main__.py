"""`python -m scripts.chaos`: the chaos harness's command (`scripts.chaos.runner`)."""

from __future__ import annotations

import sys

from scripts.chaos.runner import main

if __name__ == "__main__":
    sys.exit(main())
