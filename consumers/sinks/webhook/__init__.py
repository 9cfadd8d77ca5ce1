"""The ``webhook`` sink kind: signed event deliveries (Standard Webhooks) to subscribers."""
