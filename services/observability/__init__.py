"""Shared pieces of the platform's Prometheus metrics."""

from services.observability.labels import OTHER, NamespaceLabels, WorkerLabels

__all__ = ["OTHER", "NamespaceLabels", "WorkerLabels"]
