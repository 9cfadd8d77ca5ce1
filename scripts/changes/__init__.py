"""The change generator: users of the `Users` table created, updated and deleted, each change one
conditional write and so one record on the table's change stream.

    model         a user, a change of one, and the conditions every write carries
    generator     `UserChangeGenerator`: the changes, deterministic for a seed
    writer        `apply_changes`: one by one, or batched and concurrent, each key in order
    transactions  a batch as one TransactWriteItems, retried while nothing of it was refused
    outages       a write waited through an unreachable or failing endpoint, counted once
    cli           the command, `python -m scripts.generate_changes`
"""
