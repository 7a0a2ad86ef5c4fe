"""podrelease: release pods (images + volumes) through channels, as doit tasks."""

__version__ = "0.1.0"
