"""`.ci/audit.py` (make audit): the allow-list, the reports of pip-audit and npm audit, the verdict."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"
_spec = importlib.util.spec_from_file_location("ci_audit", _PATH)
assert _spec and _spec.loader
audit = importlib.util.module_from_spec(_spec)
sys.modules["ci_audit"] = audit  # dataclasses look their module up
_spec.loader.exec_module(audit)

TODAY = dt.date(2026, 12, 2)
ENTRY = 'id = "GHSA-aaaa-bbbb-cccc"\npackage = "Some_Package"\nreason = "not reachable from our code"\n'


def allowlist(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audit-allowlist.toml"
    path.write_text(text)
    return path


def test_the_repository_allowlist_is_valid():
    assert isinstance(audit.load_allowlist(audit.ALLOWLIST, dt.date.today()), list)


def test_an_entry_is_read_with_its_package_name_normalised(tmp_path):
    [entry] = audit.load_allowlist(allowlist(tmp_path, f"[[allow]]\n{ENTRY}review_by = 2027-01-31\n"), TODAY)
    assert (entry.id, entry.package, entry.review_by) == ("GHSA-aaaa-bbbb-cccc", "some-package", dt.date(2027, 1, 31))


@pytest.mark.parametrize(
    "text, message",
    [
        (f"[[allow]]\n{ENTRY}review_by = 2026-12-01\n", "review date 2026-12-01 has passed"),
        (f"[[allow]]\n{ENTRY}", "missing ['review_by']"),
        (f"[[allow]]\n{ENTRY}review_by = 2027-01-01\nseverity = 'low'\n", "unknown ['severity']"),
        (f"[[allow]]\n{ENTRY}review_by = '2027-01-01'\n", "review_by must be a date"),
        ('[[allow]]\nid = "X"\npackage = "p"\nreason = " "\nreview_by = 2027-01-01\n', "give a reason"),
        ("[[allow]\n", "audit-allowlist.toml"),
    ],
)
def test_a_bad_or_expired_entry_fails_naming_it(tmp_path, text, message):
    with pytest.raises(audit.AuditError, match=message.replace("[", r"\[").replace("]", r"\]")):
        audit.load_allowlist(allowlist(tmp_path, text), TODAY)


def finding(package="some-package", ident="PYSEC-2026-1", aliases=("GHSA-aaaa-bbbb-cccc",)):
    return audit.Finding("constraints.txt", package, "1.0", ident, aliases, "1.1")


def test_an_entry_accepts_a_finding_by_id_or_alias_and_package():
    entry = audit.Allowed("GHSA-aaaa-bbbb-cccc", "some-package", "why", dt.date(2027, 1, 1))
    assert audit.allowed_by(finding(), [entry]) is entry
    assert audit.allowed_by(finding(package="Some.Package"), [entry]) is entry
    assert audit.allowed_by(finding(package="other"), [entry]) is None
    assert audit.allowed_by(finding(aliases=()), [entry]) is None


def test_pip_audit_report_gives_findings_and_skipped_packages():
    report = {
        "dependencies": [
            {
                "name": "requests",
                "version": "2.0.0",
                "vulns": [{"id": "PYSEC-1", "aliases": ["CVE-1"], "fix_versions": ["2.1"]}],
            },
            {"name": "fine", "version": "1.0", "vulns": []},
            {"name": "private", "skip_reason": "Dependency not found on PyPI"},
        ]
    }
    findings, skipped = audit.pip_findings("constraints.txt", report)
    assert findings == [audit.Finding("constraints.txt", "requests", "2.0.0", "PYSEC-1", ("CVE-1",), "2.1")]
    assert skipped == ["private: Dependency not found on PyPI"]


def test_npm_audit_report_gives_one_finding_per_advisory():
    report = {
        "vulnerabilities": {
            "semver": {
                "range": "<7.5.2",
                "via": [{"source": 1096482, "url": "https://github.com/advisories/GHSA-c2qf-rxjj-qqgw"}],
                "fixAvailable": {"name": "semver", "version": "7.5.4"},
            },
            "parent": {"range": "1.x", "via": ["semver"], "fixAvailable": True},
        }
    }
    assert audit.npm_findings("npm", report) == [
        audit.Finding("npm", "semver", "<7.5.2", "GHSA-c2qf-rxjj-qqgw", ("npm-1096482",), "semver 7.5.4")
    ]


@pytest.fixture
def offline(monkeypatch, tmp_path, capsys):
    """Both vulnerability services unreachable, an empty allow-list."""
    monkeypatch.setattr(audit, "ALLOWLIST", allowlist(tmp_path, ""))
    monkeypatch.setattr(audit, "probe", lambda url, body=None: f"{url} answered HTTP 404")
    monkeypatch.setattr(audit, "npm_audit", lambda folder: ([], "npm audit: 405 Method Not Allowed"))
    monkeypatch.delenv("AUDIT_STRICT", raising=False)
    return capsys


def test_unreachable_services_are_skipped_loudly_unless_strict(offline):
    assert audit.main([]) == 0
    out, err = offline.readouterr()
    assert "SKIPPED     Python (pypi vulnerability service)" in out and "SKIPPED     npm" in out
    assert "skipped, not failed" in err
    assert audit.main(["--strict"]) == 2


def test_a_finding_fails_unless_allowed(offline, monkeypatch, tmp_path):
    vulnerable = audit.Finding("npm infra/local/package-lock.json", "semver", "<7.5.2", "GHSA-c2qf-rxjj-qqgw", (), "")
    monkeypatch.setattr(audit, "npm_audit", lambda folder: ([vulnerable], None))
    assert audit.main([]) == 1
    assert "VULNERABLE  semver <7.5.2: GHSA-c2qf-rxjj-qqgw" in offline.readouterr().out
    monkeypatch.setattr(
        audit,
        "ALLOWLIST",
        allowlist(
            tmp_path,
            '[[allow]]\nid = "GHSA-c2qf-rxjj-qqgw"\npackage = "semver"\nreason = "dev only"\nreview_by = 2999-01-01\n',
        ),
    )
    assert audit.main([]) == 0
    assert "allowed     semver" in offline.readouterr().out
