"""Test tooling the chaos runner and the tests share (a fault-injecting proxy)."""
