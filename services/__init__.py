"""Where the services are: the target (local stack, LocalStack, AWS), its endpoints and
credentials, client factories, and what its Kinesis guarantees about stored records.

Used by the consumers' runtime, the local stack (``infra``) and the tools alike; it imports
nothing of theirs (only the core's error base class)."""
