"""The pipeline on AWS: a CloudFormation template generated from `producer_config/` and
`consumers/*/app.toml` (`template`), each app's least-privilege IAM policies (`iam`), a small
deterministic YAML writer (`render`), and the workers' container image (`worker.Dockerfile`).

    .venv/bin/python -m infra.deploy.aws.template --out template.yaml   # make iac-check lints it; make deploy
"""
