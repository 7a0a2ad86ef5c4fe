"""Errors of bundling and deploying pods: each one is a single line for a user.

`ops-onboard` prints any of them as `ops-onboard: <message>` and exits
non-zero; nothing here ever needs a traceback to be understood.
"""

from __future__ import annotations


class OnboardError(Exception):
    """A bad input or a failed check; the message says what and where."""


class PodJsonError(OnboardError):
    """A `pod.json` that is missing, not JSON, or not shaped as the spec says."""


class IntegrityError(OnboardError):
    """Content whose hash differs from what `pod.json` (or a record) says."""


class UnsafeArchiveError(OnboardError):
    """A tarball member that would land outside its directory, or is not plain data."""


class FetchError(OnboardError):
    """A source that cannot be read: missing file, HTTP error, retries exhausted."""


class LockTimeout(OnboardError):
    """Another `ops-onboard` held the lock for longer than we were willing to wait."""
