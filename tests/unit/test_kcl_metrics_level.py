"""`[kcl] metrics_level` of app.toml: the KCL's own CloudWatch metrics (its `metricsLevel`),
per app; by default none on the emulators and SUMMARY on AWS."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consumers.runtime.daemon import render_properties
from producer_config import ConfigError, load_pipeline
from services.config import REPO_ROOT, StackConfig
from tests.unit.conftest import APP_DEAD_LETTER, APP_HEAD, APP_SINK

PIPELINE = load_pipeline()
APP = APP_HEAD + APP_SINK + APP_DEAD_LETTER


def _metrics_level(app, target: str, tmp_path) -> str:
    stack = StackConfig.from_env({"CDC_TARGET": target, "CDC_STATE_DIR": str(tmp_path), "CDC_OPENSEARCH_URL": "x"})
    app = replace(app, source_file=str(REPO_ROOT / "consumers" / "x" / "app.toml"))  # the header names it
    lines = render_properties(app, PIPELINE, stack, 1).splitlines()
    [line] = [line for line in lines if line.startswith("metricsLevel = ")]
    return line.removeprefix("metricsLevel = ")


@pytest.mark.parametrize(("target", "level"), [("local", "NONE"), ("localstack", "NONE"), ("aws", "SUMMARY")])
def test_the_default_depends_on_the_target(app_folder, tmp_path, target, level):
    from consumers.runtime import config

    app_folder("x", APP)
    app = config.load_app("x", PIPELINE)
    assert app.kcl_metrics_level is None
    assert _metrics_level(app, target, tmp_path) == level


@pytest.mark.parametrize("target", ["local", "aws"])
def test_app_toml_sets_it(app_folder, tmp_path, target):
    from consumers.runtime import config

    app_folder("x", APP + '[kcl]\nmetrics_level = "DETAILED"\n')
    app = config.load_app("x", PIPELINE)
    assert app.kcl_metrics_level == "DETAILED"
    assert _metrics_level(app, target, tmp_path) == "DETAILED"


def test_a_wrong_level_names_the_key_and_the_choices(app_folder):
    from consumers.runtime import config

    app_folder("x", APP + '[kcl]\nmetrics_level = "ALL"\n')
    with pytest.raises(ConfigError, match=r"kcl\.metrics_level: must be one of \('NONE', 'SUMMARY', 'DETAILED'\)"):
        config.load_app("x", PIPELINE)


def test_a_misspelt_key_is_refused(app_folder):
    from consumers.runtime import config

    app_folder("x", APP + '[kcl]\nmetric_level = "NONE"\n')
    with pytest.raises(ConfigError, match="did you mean 'metrics_level'"):
        config.load_app("x", PIPELINE)
