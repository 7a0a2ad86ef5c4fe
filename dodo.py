from podrelease.tasks import *  # noqa: F401,F403
