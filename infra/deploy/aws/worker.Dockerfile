# syntax=docker/dockerfile:1
# The consumer apps' worker image: Python, a JRE, the KCL MultiLangDaemon jars (built with
# amazon-kclpy), the project's code. One image for every app; the ECS task definition picks the
# app with CDC_APP (infra/deploy/aws/template.py). Build from the repository root:
#
#   docker build -f infra/deploy/aws/worker.Dockerfile -t kinesis-cdc-worker:$(git rev-parse --short HEAD) .
#
# No credentials at build time: the only downloads are PyPI packages and the KCL jars from Maven
# Central; at run time the task role's credentials come from the ECS metadata endpoint.

# ---------------------------------------------------------------------------------- builder
FROM python:3.11.7-slim-bookworm AS builder
WORKDIR /build
COPY pyproject.toml constraints.txt ./
# The runtime dependencies of pyproject.toml only, with the project's constraints. Building the
# amazon-kclpy wheel downloads the MultiLangDaemon jars its pom.xml lists into amazon_kclpy/jars.
RUN python -m venv /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt -r requirements.txt \
 && test -n "$(ls /opt/venv/lib/python3.11/site-packages/amazon_kclpy/jars/*.jar)"

# ---------------------------------------------------------------------------------- runtime
FROM python:3.11.7-slim-bookworm
# Debian's JRE follows bookworm's security updates; a pinned package version would stop
# building once the archive drops it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cdc \
 && useradd --system --uid 10001 --gid cdc --no-create-home --shell /usr/sbin/nologin cdc
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY consumers/ consumers/
COPY producer_config/ producer_config/
COPY base/ base/
COPY services/ services/
COPY infra/__init__.py infra/__init__.py
COPY infra/deploy/__init__.py infra/deploy/__init__.py
COPY infra/deploy/aws/__init__.py infra/deploy/aws/entrypoint.py infra/deploy/aws/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDC_TARGET=aws \
    CDC_STATE_DIR=/tmp/cdc-state
USER 10001:10001
# Healthy while the MultiLangDaemon's JVM runs (the supervisor restarts it within 30 s).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import os, sys; sys.exit(0 if any(open(f'/proc/{p}/comm').read().strip() == 'java' for p in os.listdir('/proc') if p.isdigit()) else 1)"]
CMD ["python", "-m", "infra.deploy.aws.entrypoint"]
