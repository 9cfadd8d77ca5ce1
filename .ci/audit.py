"""`make audit`: known vulnerabilities in the pinned dependencies, with a reviewed allow-list.

    python .ci/audit.py [--strict]        (run by `make audit` with .deps/audit's python)

Audits, with pip-audit (its own venv, `.ci/audit-requirements.txt`), every pin of
`constraints.txt`, what the main venv holds (`pip freeze`), and `infra/local/localstack/constraints.txt`;
with `npm audit`, `infra/local/package-lock.json`. A finding fails the audit unless an entry of
`.ci/audit-allowlist.toml` (id or one of its aliases, and package) accepts it; an entry past
its `review_by` date fails the audit too, until someone reviews it.

A vulnerability service that cannot be reached (no network, a registry mirror without the
advisory API) is reported as `SKIPPED` with the reason, and the audit exits 0: CI here runs
where the services are not reachable, and a network limit is not a vulnerability. With
`--strict` (or AUDIT_STRICT=1) an unreachable service fails the audit (exit 2).

Exit status: 0 clean (or skipped), 1 findings or a bad allow-list, 2 a service unreachable
under --strict.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWLIST = ROOT / ".ci" / "audit-allowlist.toml"
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
#: the per-release JSON pip-audit's default service (pypi) reads; any published release will do
PYPI_PROBE = "https://pypi.org/pypi/pip/24.0/json"
OSV_PROBE = "https://api.osv.dev/v1/query"
_ALLOWED_KEYS = {"id", "package", "reason", "review_by"}


class AuditError(Exception):
    """The allow-list or a tool's answer cannot be used."""


@dataclass(frozen=True, slots=True)
class Allowed:
    id: str
    package: str
    reason: str
    review_by: dt.date


@dataclass(frozen=True, slots=True)
class Finding:
    source: str  # what was audited: "constraints.txt", "npm infra/local/package-lock.json", ...
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix: str  # fixed versions, or what npm says

    def line(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.package} {self.version}: {self.id}{aliases}, fix: {self.fix or 'none known'} [{self.source}]"


def _norm(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()


def load_allowlist(path: Path, today: dt.date) -> list[Allowed]:
    """The entries of the allow-list; an entry without id, package, reason or review_by, with an
    unknown key, or past its review date is an error naming the entry."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AuditError(f"{path}: {exc}") from exc
    entries, problems = [], []
    for index, raw in enumerate(data.get("allow", [])):
        where = f"{path.name} [[allow]] #{index + 1} ({raw.get('id', '?')})"
        missing, unknown = _ALLOWED_KEYS - raw.keys(), raw.keys() - _ALLOWED_KEYS
        if missing or unknown:
            problems.append(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
            continue
        review_by = raw["review_by"]
        if not isinstance(review_by, dt.date) or isinstance(review_by, dt.datetime):
            problems.append(f"{where}: review_by must be a date (review_by = 2027-03-01), not {review_by!r}")
            continue
        if not str(raw["reason"]).strip():
            problems.append(f"{where}: give a reason")
            continue
        if review_by < today:
            problems.append(f"{where}: review date {review_by} has passed: check the advisory, then renew or remove")
            continue
        entries.append(Allowed(str(raw["id"]), _norm(str(raw["package"])), str(raw["reason"]), review_by))
    if problems:
        raise AuditError("\n".join(problems))
    return entries


def allowed_by(finding: Finding, allowlist: list[Allowed]) -> Allowed | None:
    ids = {finding.id, *finding.aliases}
    return next((a for a in allowlist if a.id in ids and a.package == _norm(finding.package)), None)


# ---------------------------------------------------------------------------------- Python
def probe(url: str, body: bytes | None = None) -> str | None:
    """None when the vulnerability service answers, else why not."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            resp.read(1)
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {getattr(exc, 'reason', exc)}"
    return None


def pip_findings(source: str, report: dict) -> tuple[list[Finding], list[str]]:
    """Findings and skipped packages of one pip-audit JSON report."""
    findings, skipped = [], []
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            findings.append(
                Finding(
                    source,
                    dep["name"],
                    dep.get("version", "?"),
                    vuln["id"],
                    tuple(vuln.get("aliases", [])),
                    ", ".join(vuln.get("fix_versions", [])),
                )
            )
    return findings, skipped


def audit_requirements(source: str, requirements: Path, service: str) -> tuple[list[Finding], list[str]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [str(PIP_AUDIT), "-r", str(requirements), "--no-deps", "--disable-pip", "-s", service]
        command += ["-f", "json", "-o", out.name, "--progress-spinner", "off"]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        try:
            report = json.loads(Path(out.name).read_text() or "null")
        except json.JSONDecodeError:
            report = None
    if not isinstance(report, dict):
        raise AuditError(f"pip-audit on {source} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return pip_findings(source, report)


def venv_freeze(python: Path, into: Path) -> Path:
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    into.write_text(frozen)
    return into


# ------------------------------------------------------------------------------------- npm
def npm_findings(source: str, report: dict) -> list[Finding]:
    """Findings of `npm audit --json` (lockfile v2/v3 report): one per advisory and package."""
    findings = []
    for name, vuln in report.get("vulnerabilities", {}).items():
        fix = vuln.get("fixAvailable")
        fix_text = f"{fix['name']} {fix['version']}" if isinstance(fix, dict) else ("yes" if fix else "")
        for via in vuln.get("via", []):
            if not isinstance(via, dict):  # a package name: the advisory is listed under that package
                continue
            ghsa = re.search(r"GHSA-[\w-]+", via.get("url", ""))
            ident = ghsa.group(0) if ghsa else f"npm-{via.get('source')}"
            aliases = (f"npm-{via.get('source')}",) if ghsa and via.get("source") else ()
            findings.append(Finding(source, name, vuln.get("range", "?"), ident, aliases, fix_text))
    return findings


def npm_audit(folder: Path) -> tuple[list[Finding], str | None]:
    """Findings, or (nothing, why the audit endpoint could not be used)."""
    done = subprocess.run(
        ["npm", "audit", "--json", "--package-lock-only"], capture_output=True, text=True, cwd=folder, check=False
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return [], f"npm audit gave no report (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    if "error" in report:
        error = report["error"]
        detail = " ".join(str(x) for x in (error.get("summary"), error.get("code"), report.get("message")) if x)
        return [], f"npm audit: {detail or 'the audit endpoint returned an error'}"
    return npm_findings(f"npm {folder.relative_to(ROOT)}/package-lock.json", report), None


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", default=os.environ.get("AUDIT_STRICT") == "1")
    parser.add_argument("--service", default=os.environ.get("AUDIT_SERVICE", "pypi"), choices=("pypi", "osv"))
    parser.add_argument("--venv-python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    args = parser.parse_args(argv)
    try:
        allowlist = load_allowlist(ALLOWLIST, dt.date.today())
    except AuditError as exc:
        print(f"audit: allow-list: {exc}", file=sys.stderr)
        return 1

    findings: list[Finding] = []
    skipped_services: list[str] = []
    unaudited: list[str] = []
    unreachable = probe(PYPI_PROBE) if args.service == "pypi" else probe(OSV_PROBE, b"{}")
    if unreachable:
        skipped_services.append(f"Python ({args.service} vulnerability service): {unreachable}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sets = [("constraints.txt", ROOT / "constraints.txt")]
            if args.venv_python.exists():
                sets.append(("the main venv", venv_freeze(args.venv_python, Path(tmp) / "venv.txt")))
            sets.append(
                ("infra/local/localstack/constraints.txt", ROOT / "infra" / "local" / "localstack" / "constraints.txt")
            )
            for source, requirements in sets:
                found, skipped = audit_requirements(source, requirements, args.service)
                findings += found
                unaudited += [f"{package} [{source}]" for package in skipped]
    npm_found, npm_unreachable = npm_audit(ROOT / "infra" / "local")
    findings += npm_found
    if npm_unreachable:
        skipped_services.append(f"npm (infra/local/package-lock.json): {npm_unreachable}")

    failing = []
    for finding in sorted(set(findings), key=lambda f: (f.package, f.id, f.source)):
        entry = allowed_by(finding, allowlist)
        if entry:
            print(f"allowed     {finding.line()}: {entry.reason} (review by {entry.review_by})")
        else:
            print(f"VULNERABLE  {finding.line()}")
            failing.append(finding)
    for package in unaudited:
        print(f"NOT AUDITED {package}")
    for reason in skipped_services:
        print(f"SKIPPED     {reason}")
    if failing or unaudited:
        print(
            f"audit: {len(failing)} vulnerable, {len(unaudited)} not audited: upgrade the pin, "
            f"or accept it in {os.path.relpath(ALLOWLIST, ROOT)} (id, package, reason, review_by)",
            file=sys.stderr,
        )
        return 1
    if skipped_services:
        verdict = "FAILED (--strict / AUDIT_STRICT=1)" if args.strict else "skipped, not failed (docs/security.md)"
        print(f"audit: {len(skipped_services)} vulnerability service(s) unreachable: {verdict}", file=sys.stderr)
        return 2 if args.strict else 0
    print(f"audit: no known vulnerability ({len(findings)} allowed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
