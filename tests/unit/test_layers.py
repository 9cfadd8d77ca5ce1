"""The layers, as a contract: every import of every module (function-level ones included) is
checked against what its layer may use. From the bottom up:

    base             the root of the exception hierarchy and the one retry policy: stdlib only
    pure core        consumers.shared (codec, envelope, records, filtering, planning, errors):
                     stdlib, orjson and base; knows no app, sink, client library or stack
    domain           consumers.domain: business rules several apps share; the core only
    adapters         consumers.sinks (one module per sink kind and their registry; client
                     libraries, clients are passed in), consumers.runtime (KCL runtime, dead
                     letters, wiring, worker stats)
    services         services: the target, its endpoints, clients, stream reading, Kinesis
                     durability; knows no consumer (only base)
    configuration    producer_config: the pipeline file (only base)
    apps             consumers/<app>/ (an app.toml beside it): the core, the domain, sink
                     conventions; never another app
    tools            consumers.verify: configuration-driven, so it imports no app
    infra            infra.relay (the stand-in for the streaming destination), infra.local (the
                     emulator stack), infra.ops (`cdc`), infra.deploy.aws (CloudFormation, IAM,
                     the worker image), infra.testing (fault injection): each may use what is
                     below it, never a sibling above it (the table ALLOWED says which)
    scripts, bench   may use everything; nothing in consumers/ imports them
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
CLIENTS = ("boto3", "botocore", "opensearchpy", "orjson")
#: what the consumers' runtime and the tools built on it may use
BELOW_INFRA = (
    "base",
    "consumers.runtime",
    "consumers.shared",
    "consumers.sinks",
    "services",
    "producer_config",
    *CLIENTS,
)

#: layer (a package) -> what its modules may import besides the standard library
ALLOWED: dict[str, tuple[str, ...]] = {
    "base": ("base",),
    "consumers.shared": ("consumers.shared", "base", "orjson"),
    "consumers.domain": ("consumers.domain", "consumers.shared"),
    "consumers.sinks": (
        "consumers.sinks",
        "consumers.shared",
        "base",
        "producer_config",
        "botocore",
        "opensearchpy",
        "orjson",
        "standardwebhooks",
        "urllib3",
    ),
    "consumers.runtime": (*BELOW_INFRA, "amazon_kclpy"),
    "consumers.verify": BELOW_INFRA,
    "services": ("services", "base", "boto3", "botocore", "localstack_client", "opensearchpy"),
    "producer_config": ("producer_config", "base"),
    **{package: (package, "consumers.shared", "consumers.domain", "consumers.sinks") for package in APP_PACKAGES},
    "infra.testing": ("infra.testing",),
    "infra.relay": ("infra.relay", "consumers.shared", *BELOW_INFRA),
    "infra.local": ("infra.local", "infra.relay", *BELOW_INFRA, "consumers.verify", "standardwebhooks"),
    "infra.ops": ("infra.ops", "infra.local", "infra.relay", "infra.deploy", *BELOW_INFRA, "consumers.verify", "tqdm"),
    "infra.deploy": ("infra.deploy", "consumers.sinks", "consumers.runtime", "producer_config", "base", "services"),
    "infra": ("infra",),
}
#: the top-level packages the contract covers (tests, scripts and bench are tools above all)
LAYERED = ("base", "consumers", "services", "producer_config", "infra")


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
        if not module.startswith("infra") and _within(name, LOCAL_STACK):
            found.append(f"{module} imports {name}: nothing in consumers/ may import the local stack or tools")
        elif layer is not None and not _within(name, ALLOWED[layer]):
            found.append(f"{module} imports {name}, outside what layer {layer} may use: {ALLOWED[layer]}")
    return found


def _modules():
    for top in LAYERED:
        yield from sorted(p for p in (ROOT / top).rglob("*.py") if "node_modules" not in p.parts)


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_imports_only_what_its_layer_may_use(path):
    module = _module_name(path)
    assert violations(module, imports_of(path.read_text(), module, path.name == "__init__.py")) == []


def test_every_module_belongs_to_a_layer():
    unlayered = [
        _module_name(p)
        for p in _modules()
        if _module_name(p) not in ("consumers", "infra")
        and not any(_within(_module_name(p), (layer,)) for layer in ALLOWED if layer != "infra")
    ]
    assert unlayered == []


def test_every_top_level_package_is_layered_or_a_tool():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - set(LAYERED) <= {"scripts", "bench", "tests"}


@pytest.mark.parametrize(
    "module, source",
    [
        ("consumers.runtime.worker", "import infra.relay.pump"),
        ("base.retry", "from consumers.shared.errors import SinkError"),
        ("consumers.shared.errors", "from services.config import StackError"),
        ("infra.relay.pump", "from infra.ops import apps"),
        ("infra.local.stack", "from infra.ops.replay import replay"),
        ("infra.deploy.aws.template", "from infra.local import stack"),
        ("infra.testing.faultproxy", "from services import clients"),
        ("consumers.shared.records", "def f():\n    from infra import stack"),
        ("consumers.shared.codec", "import boto3"),
        ("consumers.shared.records", "from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE"),
        ("consumers.workplace_user_v2.transform", "from consumers.app_user_management.transform import project_user"),
        ("consumers.verify", "from consumers.workplace_user_v2.transform import membership_items"),
        ("services.config", "from consumers.runtime.config import load_app"),
        ("producer_config", "from . import x\nfrom services import clients"),
    ],
)
def test_the_contract_catches_an_import_across_layers(module, source):
    assert violations(module, imports_of(source, module)) != []


def kind_branches(source: str) -> list[str]:
    """Comparisons with a sink kind's name (``app.sink.type == "opensearch"``): the branches the
    registry replaces."""
    from consumers.sinks.registry import KINDS

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                names = [operand] if not isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else operand.elts
                for name in names:
                    if isinstance(name, ast.Constant) and name.value in KINDS:
                        found.append(f"line {node.lineno}: compares with the sink kind {name.value!r}")
    return found


def _outside_the_sink_kinds():
    for top in (*LAYERED, "scripts", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "node_modules" not in path.parts and not path.is_relative_to(ROOT / "consumers" / "sinks"):
                yield path


@pytest.mark.parametrize("path", list(_outside_the_sink_kinds()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_branches_on_a_sink_kind_outside_the_kind_and_the_registry(path):
    assert kind_branches(path.read_text()) == []


def test_the_kind_branch_check_catches_a_branch():
    assert kind_branches('if app.sink.type == "opensearch":\n    pass') != []
    assert kind_branches('if app.sink.type in ("dynamodb", "x"):\n    pass') != []


def package_graph(depth: int = 2) -> dict[str, set[str]]:
    """Package -> the project packages it imports (names cut to ``depth`` parts)."""
    tops = (*LAYERED, "scripts", "bench")
    graph: dict[str, set[str]] = {}
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            module = _module_name(path)
            source = ".".join(module.split(".")[:depth])
            for name in imports_of(path.read_text(), module, path.name == "__init__.py"):
                target = ".".join(name.split(".")[:depth])
                if name.split(".")[0] in tops and target != source:
                    graph.setdefault(source, set()).add(target)
    return graph


if __name__ == "__main__":  # python -m tests.unit.test_layers [DEPTH]: the package import graph
    for package, imported in sorted(package_graph(int(sys.argv[1]) if len(sys.argv) > 1 else 2).items()):
        print(f"{package:<28} -> {', '.join(sorted(imported))}")
