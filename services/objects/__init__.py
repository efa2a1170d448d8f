"""The Durable Object host (component `objects`): workerd running tenant classes as facets."""

from services.objects.service import ObjectsHost, ObjectsOptions

__all__ = ["ObjectsHost", "ObjectsOptions"]
