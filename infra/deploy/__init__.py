"""Deployment of the pipeline to where it runs in production (`aws/`)."""
