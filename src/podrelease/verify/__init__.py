"""`doit verify`: check a release root against itself and its sources; repair nothing."""

from .verifier import Problem, Report, verify

__all__ = ["Problem", "Report", "verify"]
