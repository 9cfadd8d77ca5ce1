"""Every socket the running local stack listens on is bound to the loopback interface: each
process the stack started (its PID files) and every process under it. (LocalStack's servers:
tests/localstack.)"""

from __future__ import annotations

import pytest

from tests.procfs import descendants, listening, loopback

pytestmark = pytest.mark.stack


def test_every_socket_the_stack_listens_on_is_bound_to_the_loopback_interface(stack):
    roots = {path.stem: int(path.read_text()) for path in (stack.state_dir / "pids").glob("*.pid")}
    assert {"dynamodb", "dynamodb-leases", "kinesis", "opensearch", "relay"} <= set(roots), roots
    bound = {name: [address for _, address in listening(descendants(root))] for name, root in roots.items()}
    print(f"\nlistening: {bound}")
    for name in ("dynamodb", "dynamodb-leases", "kinesis", "opensearch"):
        assert bound[name], f"{name} listens on nothing: is its PID file right?"
    exposed = {name: [a for a in addresses if not loopback(a)] for name, addresses in bound.items()}
    assert not any(exposed.values()), exposed
