"""Process configuration from the environment (defined in `projections.settings`)."""

from projections.settings import DEFAULT_PARTITIONS, DEFAULT_TOPIC, Settings

__all__ = ["DEFAULT_PARTITIONS", "DEFAULT_TOPIC", "Settings"]
