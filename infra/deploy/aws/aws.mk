# The pipeline on AWS (included by the Makefile): the CloudFormation template generated from
# producer_config/ and consumers/*/app.toml, its checks, its deployment. infra/deploy/aws/README.md.

IAC_VENV := $(DEPS)/iac-tools
# generated on demand, never committed (.gitignore); `make iac-check` writes it anew each time
IAC_OUT := infra/deploy/aws/generated
STACK_NAME ?= kinesis-cdc
CHECKOV := $(IAC_VENV)/bin/checkov --quiet --compact --skip-download

.PHONY: iac-tools iac-check deploy

iac-tools: $(IAC_VENV)/.installed  ## cfn-lint, checkov and hadolint, pinned, in their own venv (.deps/iac-tools)

# A venv of its own: checkov pins many packages that must not meet the project's.
$(IAC_VENV)/.installed: infra/deploy/aws/requirements.txt infra/deploy/aws/constraints.txt
	rm -rf $(IAC_VENV)
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install -q --disable-pip-version-check \
	    -c infra/deploy/aws/constraints.txt -r infra/deploy/aws/requirements.txt
	touch $@

iac-check: $(VENV)/.installed $(IAC_VENV)/.installed  ## generate the AWS template; cfn-lint and checkov on it, hadolint and checkov on the worker image
	$(PY) -m infra.deploy.aws.template --out $(IAC_OUT)/template.yaml
	$(PY) -m infra.deploy.aws.template --json --out $(IAC_OUT)/template.json
	$(IAC_VENV)/bin/python -c 'import json, sys, yaml; \
	    sys.exit(0 if yaml.safe_load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else "the YAML and JSON templates differ")' \
	    $(IAC_OUT)/template.yaml $(IAC_OUT)/template.json
	$(IAC_VENV)/bin/cfn-lint $(IAC_OUT)/template.yaml
	$(CHECKOV) --framework cloudformation -f $(IAC_OUT)/template.yaml
	$(IAC_VENV)/bin/hadolint infra/deploy/aws/worker.Dockerfile
	$(CHECKOV) --framework dockerfile -f infra/deploy/aws/worker.Dockerfile
	@echo "iac-check: $(IAC_OUT)/template.yaml and infra/deploy/aws/worker.Dockerfile pass"

deploy: $(VENV)/.installed  ## IMAGE_TAG=… VPC=… SUBNETS=a,b [PARAMS='K=V …'] [STACK_NAME=kinesis-cdc]: aws cloudformation deploy
	@aws --version >/dev/null 2>&1 || { echo "make deploy: the AWS CLI (aws) is not installed or does not run; install it and configure credentials for the target account (aws configure / AWS_PROFILE)" >&2; exit 1; }
	@if [ -z "$(IMAGE_TAG)" ] || [ -z "$(VPC)" ] || [ -z "$(SUBNETS)" ]; then \
	    echo "usage: make deploy IMAGE_TAG=<worker image tag in ECR> VPC=<vpc-id> SUBNETS=<subnet-id>,<subnet-id> [PARAMS='Key=Value ...'] [STACK_NAME=$(STACK_NAME)]" >&2; exit 2; fi
	$(PY) -m infra.deploy.aws.template --out $(IAC_OUT)/template.yaml
	aws cloudformation deploy --stack-name $(STACK_NAME) --template-file $(IAC_OUT)/template.yaml \
	    --region "$$($(PY) -c 'from producer_config import load_pipeline; print(load_pipeline().region)')" \
	    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	    --parameter-overrides ImageTag=$(IMAGE_TAG) VpcId=$(VPC) SubnetIds=$(SUBNETS) $(PARAMS)
