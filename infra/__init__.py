"""Local stack, provisioning and operations of the CDC pipeline (not used by consumer hot paths)."""
