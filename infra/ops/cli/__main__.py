"""`python -m infra.ops.cli ...`: the `cdc` command (the Makefile and the stack tests run it so)."""

from __future__ import annotations

import sys

from infra.ops.cli import main

sys.exit(main())
