"""`from podrelease.tasks import *`: the one line of a release root's dodo.py."""

from .plugin.loader import *  # noqa: F401,F403
from .plugin.loader import __all__  # noqa: F401
