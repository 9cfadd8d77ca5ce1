"""A misspelt key or variable is refused with the closest match, in every configuration file and
for every CDC_* variable: a typo must never load as "not set" and silently change behaviour."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from producer_config import DEFAULT_PIPELINE_FILE, ConfigError, load_pipeline
from services.config import REPO_ROOT, VARIABLES, StackConfig, StackError

PIPELINE = DEFAULT_PIPELINE_FILE.read_text()


@pytest.mark.parametrize(
    "old, new, key, suggestion",
    [
        ('version_attribute = "Version"', 'version_atribute = "Version"', "tables.Users.version_atribute", "version_attribute"),
        ("retention_hours = 24", "retention_hour = 24", "streams.users-changes.retention_hour", "retention_hours"),
        ('region = "us-east-1"', 'regoin = "us-east-1"', "regoin", "region"),
        ("approximate_creation_date_time_precision", "approximate_creation_time_precision",
         "streaming_destination.approximate_creation_time_precision", "approximate_creation_date_time_precision"),
        ('source_table = "WorkplaceUsers_V2"', 'source_tabel = "WorkplaceUsers_V2"', "indexes.workplace-users-v2.source_tabel", "source_table"),
        ('hash_key = { name = "UserId", type = "S" }', 'hash_key = { name = "UserId", typ = "S" }', "tables.Users.hash_key.typ", "type"),
    ],
)  # fmt: skip
def test_a_typo_in_pipeline_toml_names_the_file_the_key_and_the_closest_key(tmp_path, old, new, key, suggestion):
    path = tmp_path / "pipeline.toml"
    assert old in PIPELINE
    path.write_text(PIPELINE.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_pipeline(path)
    assert str(path) in str(error.value) and f"{key}: unknown key" in str(error.value)
    assert f"did you mean {suggestion!r}" in str(error.value)


def test_the_pipeline_file_as_shipped_loads():
    assert load_pipeline().tables["Users"].version_attribute == "Version"


def test_a_misspelt_cdc_variable_is_refused_with_the_closest_one():
    with pytest.raises(StackError, match="CDC_OPENSEARCH_URLL is not a variable.*did you mean 'CDC_OPENSEARCH_URL'"):
        StackConfig.from_env({"CDC_OPENSEARCH_URLL": "http://127.0.0.1:9200"})
    assert StackConfig.from_env({"CDC_OPENSEARCH_URL": "http://127.0.0.1:9200"}).opensearch_url_override


def test_every_cdc_variable_the_code_reads_is_known_and_every_known_one_is_read():
    """The list is the code's: a variable added without it would be refused at start."""
    used: set[str] = set()
    for folder in ("base", "consumers", "services", "infra", "producer_config", "scripts", "bench", ".ci"):
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".cjs", ".js", ".java", ".mk", ".patch") or path.name == "run":
                if "node_modules" in path.parts or not path.is_file():
                    continue
                used |= set(re.findall(r"\bCDC_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    used |= set(re.findall(r"\bCDC_[A-Z0-9_]*[A-Z0-9]\b", Path(REPO_ROOT / "Makefile").read_text()))
    assert used - VARIABLES == set()
    assert VARIABLES - used == set()
