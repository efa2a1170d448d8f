"""Logging set-up for the platform's processes (defined in `projections.logs`)."""

from projections.logs import (
    FORMAT_ENV,
    LEVEL_ENV,
    bound,
    choose_format,
    configure,
    context,
    formatter,
)

__all__ = ["FORMAT_ENV", "LEVEL_ENV", "bound", "choose_format", "configure", "context",
           "formatter"]
