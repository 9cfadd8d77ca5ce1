"""The local stack: the emulators as supervised processes of this project (DynamoDB Local,
kinesis-mock, OpenSearch, LocalStack in host mode), their patches, provisioning and preflight."""
