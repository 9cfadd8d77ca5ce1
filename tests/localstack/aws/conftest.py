"""The AWS target (``CDC_TARGET=aws``) on API emulators, in the LocalStack session: LocalStack
for Kinesis and DynamoDB (the streaming destination is LocalStack's own), moto server for ECS,
Application Auto Scaling and CloudWatch, the project's OpenSearch node for the domain, and the
Fargate stand-in (`tests.localstack.aws.fargate`) running each ECS service's tasks.

Everything reaches the emulators through the SDKs' standard endpoint settings
(``AWS_ENDPOINT_URL_<SERVICE>``), `cdc`, the workers and their KCL alike: no code path of the
AWS target knows it is not on AWS. The LocalStack session's own worker processes are stopped for
these tests (the same lease tables) and started again after them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from consumers.runtime.config import discover_apps
from infra.deploy.aws.template import CLUSTER_NAME, build_template
from infra.local.preflight import free_port
from infra.local.webhooks import receiver_url, subscriber_secrets
from infra.ops.apps import local_workers
from services.config import StackConfig, Target
from tests.environment import environment
from tests.localstack.aws.deploy import apply
from tests.localstack.aws.fargate import FargateStandIn

EMULATED_BY_MOTO = ("ECS", "APPLICATION_AUTO_SCALING", "CLOUDWATCH", "EC2", "SECRETS_MANAGER")
EMULATED_BY_LOCALSTACK = ("KINESIS", "DYNAMODB")


@dataclass(frozen=True)
class AwsTarget:
    stack: StackConfig  # CDC_TARGET=aws
    env: dict[str, str]  # os.environ while the tests run: what `cdc` gets
    template: dict
    created: list[str]  # what was deployed on the emulators
    fargate: FargateStandIn

    def client(self, service: str):
        return boto3.client(service, region_name=self.env["AWS_REGION"])


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
    # moto moves a task on from RUNNING (DEACTIVATING, STOPPING...) at each read; on ECS it stays
    # RUNNING until it is stopped (StopTask, which moto does at once): the stand-in decides
    transition = {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/set-transition", data=json.dumps(transition).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=5).close()
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


def _wait_running(ecs, apps, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    names = [app.name for app in apps]
    while True:
        services = ecs.describe_services(cluster=CLUSTER_NAME, services=names)["services"]
        tasks = ecs.list_tasks(cluster=CLUSTER_NAME, desiredStatus="RUNNING")["taskArns"]
        if len(tasks) >= sum(s["desiredCount"] for s in services):
            return
        assert time.monotonic() < deadline, f"the stand-in started {len(tasks)} task(s)"
        time.sleep(1)


@pytest.fixture(scope="module")
def aws(stack: StackConfig, pipeline, moto_endpoint: str, tmp_path_factory) -> Iterator[AwsTarget]:
    gateway = f"http://{stack.localstack_host}"
    env = {
        "CDC_TARGET": "aws",
        "CDC_STATE_DIR": str(tmp_path_factory.mktemp("aws-state")),
        "CDC_OPENSEARCH_URL": stack.opensearch_url,
        "AWS_REGION": pipeline.region,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        **{f"AWS_ENDPOINT_URL_{service}": gateway for service in EMULATED_BY_LOCALSTACK},
        **{f"AWS_ENDPOINT_URL_{service}": moto_endpoint for service in EMULATED_BY_MOTO},
    }
    apps = discover_apps(pipeline)
    for app in apps:  # the LocalStack session's own workers: the ECS tasks take their leases
        local_workers(stack, app, pipeline.region).stop(wait_leases=False, why="tests of the AWS target")
    template = build_template(pipeline, apps)
    try:
        with environment(env):
            clients = {
                s: boto3.client(s, region_name=pipeline.region)
                for s in ("ecs", "application-autoscaling", "cloudwatch", "secretsmanager")
            }
            ec2 = boto3.client("ec2", region_name=pipeline.region)
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # moto: a task's ENI needs it
            subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
            group = ec2.create_security_group(GroupName="workers", Description="workers", VpcId=vpc)["GroupId"]
            # user-notifications delivers to the LocalStack session's webhook receiver, signing
            # with the secrets it verifies
            parameters = {
                "ImageTag": "test",
                "SubnetIds": [subnet],
                "VpcId": vpc,
                "NotifyReceiverUrl": receiver_url(stack) + "/hooks",
            }
            created = apply(
                template,
                clients,
                parameters,
                pipeline.region,
                {"WorkerSecurityGroup": group},
                secret_values=subscriber_secrets(stack),
            )
            aws_stack = StackConfig.from_env()
            assert aws_stack.target is Target.AWS
            platform = {k: v for k, v in env.items() if k.startswith("AWS_") or k == "CDC_OPENSEARCH_URL"}
            folder = tmp_path_factory.mktemp("fargate")
            with FargateStandIn(clients["ecs"], clients["cloudwatch"], CLUSTER_NAME, platform, folder) as fargate:
                _wait_running(clients["ecs"], apps)
                yield AwsTarget(aws_stack, dict(os.environ), template, created, fargate)
    finally:
        for app in apps:
            local_workers(stack, app, pipeline.region).start()
