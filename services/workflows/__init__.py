"""The Workflows engine: durable workflow instances on their own log (docs/workflows.md)."""
