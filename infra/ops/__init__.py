"""Operations of a running pipeline: the `cdc` command and what it does (apps, status, scale,
replay, reshard, dead letters, backfill)."""
