"""The control API: FastAPI over the event log, the projection and the blob store."""

from services.api.app import create_app

__all__ = ["create_app"]
