"""`cdc`: operate the pipeline. `make up/down/status/clean/provision` call these commands.

Every command reads its settings from the environment (CDC_* variables, see README) and
`producer_config/pipeline.toml`; messages go to stderr, reports (status) to stdout.
"""

from __future__ import annotations

import argparse
import sys

from consumers.runtime.config import discover_apps
from consumers.shared.errors import CdcError
from infra import stack
from infra.provision import provision
from producer_config import load_pipeline
from targets.config import StackConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cdc", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="install-free start of the local stack, provisioning included (idempotent)")
    commands.add_parser("down", help="stop every component, keep data")
    commands.add_parser("clean", help="stop every component and wipe the state folder")
    commands.add_parser("status", help="components, streams, tables, indexes; exit 1 unless all are up")
    commands.add_parser("provision", help="apply producer_config/pipeline.toml to the target (idempotent)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            stack.up()
        elif args.command == "down":
            stack.down()
        elif args.command == "clean":
            stack.clean()
        elif args.command == "status":
            return 0 if stack.status() else 1
        elif args.command == "provision":
            pipeline = load_pipeline()
            provision(
                pipeline, StackConfig.from_env(), discover_apps(pipeline), say=lambda m: print(m, file=sys.stderr)
            )
    except CdcError as exc:
        print(f"cdc {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
