"""Wait until every sink equals its source (consumers.verify), then print the reports."""

from __future__ import annotations

import argparse
import sys

from consumers.verify import wait_converged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    reports = wait_converged(timeout_s=args.timeout, poll_s=1)
    for report in reports:
        print(report)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
