"""The old home of `verify`, kept for `plugin/commands.py`: import from `podrelease.verify`."""

from . import Problem, Report, verify

__all__ = ["Problem", "Report", "verify"]
