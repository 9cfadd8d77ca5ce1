"""The layers, as a contract: every import of every module (function-level ones included) is
checked against what its layer may use.

    pure core        consumers.shared (codec, records, filtering, planning, errors): stdlib and
                     orjson only; knows no app, sink, client library or stack
    domain           consumers.domain: business rules several apps share; the core only
    adapters         consumers.sinks (their client libraries; clients are passed in), consumers.runtime
                     (KCL runtime, dead letters, wiring)
    where services   targets: target, endpoints, clients, Kinesis durability; knows no consumer
    are              (only the core's error base class)
    configuration    producer_config: the pipeline file; the core's error base class only
    apps             consumers/<app>/ (an app.toml beside it): the core, the domain, sink
                     conventions; never another app
    tools            consumers.verify: configuration-driven, so it imports no app
    local stack      infra, scripts, bench: may use everything; nothing in consumers/ imports them
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = sorted(path.parent.name for path in (ROOT / "consumers").glob("*/app.toml"))
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
LOCAL_STACK = ("infra", "scripts", "bench", "tests")
APP_PACKAGES = tuple(f"consumers.{app}" for app in APPS)

#: layer (a package) -> what its modules may import besides the standard library
ALLOWED: dict[str, tuple[str, ...]] = {
    "consumers.shared": ("consumers.shared", "orjson"),
    "consumers.domain": ("consumers.domain", "consumers.shared"),
    "consumers.sinks": ("consumers.sinks", "consumers.shared", "botocore", "opensearchpy", "orjson"),
    "consumers.runtime": (
        "consumers.runtime",
        "consumers.shared",
        "consumers.sinks",
        "targets",
        "producer_config",
        "amazon_kclpy",
        "boto3",
        "botocore",
        "opensearchpy",
        "orjson",
    ),
    "consumers.verify": (
        "consumers.runtime",
        "consumers.shared",
        "consumers.sinks",
        "targets",
        "producer_config",
        "botocore",
        "opensearchpy",
        "orjson",
    ),
    "targets": ("targets", "consumers.shared.errors", "boto3", "botocore", "localstack_client", "opensearchpy"),
    "producer_config": ("producer_config", "consumers.shared.errors"),
    **{package: (package, "consumers.shared", "consumers.domain", "consumers.sinks") for package in APP_PACKAGES},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, at any depth, relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(module: str, imported: set[str]) -> list[str]:
    layer = max((layer for layer in ALLOWED if _within(module, (layer,))), key=len, default=None)
    found = []
    for name in sorted(imported):
        if name.split(".")[0] in STDLIB:
            continue
        if module.startswith("consumers") and _within(name, LOCAL_STACK):
            found.append(f"{module} imports {name}: nothing in consumers/ may import the local stack or tools")
        elif layer is not None and not _within(name, ALLOWED[layer]):
            found.append(f"{module} imports {name}, outside what layer {layer} may use: {ALLOWED[layer]}")
    return found


def _modules():
    for top in ("consumers", "targets", "producer_config"):
        yield from sorted((ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_imports_only_what_its_layer_may_use(path):
    module = _module_name(path)
    assert violations(module, imports_of(path.read_text(), module, path.name == "__init__.py")) == []


def test_every_module_under_consumers_belongs_to_a_layer():
    unlayered = [
        _module_name(p)
        for p in (ROOT / "consumers").rglob("*.py")
        if _module_name(p) != "consumers" and not any(_within(_module_name(p), (layer,)) for layer in ALLOWED)
    ]
    assert unlayered == []


@pytest.mark.parametrize(
    "module, source",
    [
        ("consumers.runtime.worker", "import infra.relay"),
        ("consumers.shared.records", "def f():\n    from infra import stack"),
        ("consumers.shared.codec", "import boto3"),
        ("consumers.shared.records", "from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE"),
        ("consumers.workplace_user_v2.transform", "from consumers.app_user_management.transform import project_user"),
        ("consumers.verify", "from consumers.workplace_user_v2.transform import membership_items"),
        ("targets.config", "from consumers.runtime.config import load_app"),
        ("producer_config", "from . import x\nfrom targets import clients"),
    ],
)
def test_the_contract_catches_an_import_across_layers(module, source):
    assert violations(module, imports_of(source, module)) != []
