"""infra/deploy/aws/worker.Dockerfile, read structurally (no Docker here; `make iac-check` also runs
hadolint and checkov on it), and the container's entrypoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.deploy.aws.entrypoint import worker_number

DOCKERFILE = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "aws" / "worker.Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_base_images_are_pinned():
    for _, image in [i for i in instructions() if i[0] == "FROM"]:
        name = image.split()[0]
        assert "@sha256:" in name or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", name), name


def test_runs_as_a_numeric_non_root_user():
    users = [arg for kind, arg in instructions() if kind == "USER"]
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and user != "0"
    # the last stage's USER comes after its last RUN (nothing after it runs as root)
    kinds = [kind for kind, _ in instructions()]
    assert max(i for i, k in enumerate(kinds) if k == "USER") > max(i for i, k in enumerate(kinds) if k == "RUN")


def test_no_secret_reaches_the_build():
    secretish = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)
    for kind, arg in instructions():
        if kind in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"(\w+)=", arg) or [arg.split()[0]]
            assert not [n for n in names if secretish.search(n)], arg
    assert not re.search(r"AKIA[0-9A-Z]{16}", DOCKERFILE.read_text())
    assert not any(kind == "ADD" for kind, _ in instructions())  # COPY only: no remote URLs


def test_has_a_jre_the_kcl_jars_and_the_entrypoint():
    text = DOCKERFILE.read_text()
    assert "openjdk-17-jre-headless" in text
    assert "amazon_kclpy/jars" in text
    assert instructions()[-1] == ("CMD", '["python", "-m", "infra.deploy.aws.entrypoint"]')


@pytest.mark.parametrize(("address", "number"), [("10.0.1.23", 167772439), ("172.31.255.254", 2887778302)])
def test_worker_number_is_the_tasks_address(address, number):
    assert worker_number(address) == number


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1", "not-an-address"])
def test_worker_number_refuses_what_is_not_the_tasks_own_address(address):
    with pytest.raises(ValueError):
        worker_number(address)
