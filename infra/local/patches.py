"""Patches to third-party files, applied at install onto exactly the file each was written for.

A patch set is a folder: ``*.patch`` files (unified diffs, ``-p1`` relative to the package
root) and ``SHA256SUMS``, one line per patch: ``name  sha256-before  sha256-after``. A patch is
applied only when its file has the ``before`` checksum, skipped when it already has ``after``,
and refused otherwise (another version of the package: port the patch). Each folder's
README.md says what its patches change and why, written up for upstream.

Patch sets: ``infra/local/localstack/patches`` (localstack-core, ``make install-localstack``) and
``infra/local/kinesis/patches`` (kinesis-local's ``main.js``, at ``npm ci``; the pristine file is
kept beside it as ``main.js.orig`` for the before/after benchmark).

    python -m infra.local.patches PATCH_DIR PACKAGE_ROOT --product "kinesis-local 0.6.2" [--keep-original]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.config import StackError

__all__ = ["PatchSet", "sha256"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class PatchSet:
    folder: Path
    product: str  # what the patches were written for, e.g. "localstack-core 4.9.2"

    def checksums(self) -> dict[str, tuple[str, str]]:
        """patch name -> (sha256 of the file it patches, sha256 after the patch)."""
        sums: dict[str, tuple[str, str]] = {}
        for line in (self.folder / "SHA256SUMS").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, before, after = line.split()
                sums[name] = (before, after)
        return sums

    def patched_file(self, name: str) -> str:
        """The path (relative to the package root) that patch ``name`` changes."""
        for line in (self.folder / name).read_text().splitlines():
            if line.startswith("+++ "):
                return line[4:].split("\t")[0].split("/", 1)[1]
        raise StackError(f"{self.folder / name} names no file (+++ line)")

    def apply(self, root: Path, say: Callable[[str], None] = print, keep_original: bool = False) -> list[str]:
        """Apply every patch onto the package installed at ``root``; idempotent. With
        ``keep_original`` the file before the patch stays beside it as ``<file>.orig``.
        Returns the patches applied now."""
        applied = []
        for name, (before, after) in sorted(self.checksums().items()):
            target = root / self.patched_file(name)
            if not target.is_file():
                raise StackError(f"{name}: {target} does not exist; is {self.product} installed?")
            found = sha256(target)
            if found == after:
                say(f"  already patched  {target.relative_to(root)} ({name})")
                continue
            if found != before:
                raise StackError(
                    f"{name} was written for {self.product}, whose {target.relative_to(root)} has sha256 "
                    f"{before}; the installed one has {found}. Reinstall the pinned version, or port the patch"
                )
            backup = ["-b", "-z", ".orig"] if keep_original else []
            patching = ["patch", "-p1", "-s", *backup, "-d", str(root), "-i", str((self.folder / name).resolve())]
            if subprocess.run(patching).returncode != 0:
                raise StackError(f"{name}: `{' '.join(patching)}` failed (see its output above)")
            if sha256(target) != after:
                raise StackError(f"{name}: {target} does not match the expected result after patching")
            say(f"  patched  {target.relative_to(root)} ({name})")
            applied.append(name)
        return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.patches", description=__doc__.splitlines()[0])
    parser.add_argument("patches", type=Path, help="the patch set's folder (*.patch + SHA256SUMS)")
    parser.add_argument("root", type=Path, help="the installed package's root folder")
    parser.add_argument(
        "--product", required=True, help='what the patches were written for, e.g. "kinesis-local 0.6.2"'
    )
    parser.add_argument("--keep-original", action="store_true", help="keep each file before its patch as <file>.orig")
    args = parser.parse_args(argv)
    try:
        PatchSet(args.patches, args.product).apply(
            args.root, say=lambda line: print(line, file=sys.stderr), keep_original=args.keep_original
        )
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
