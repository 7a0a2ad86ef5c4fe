"""The shared core: errors, names, hashing, atomic file operations, locks, pod.json, safe tar.

Imports nothing from podrelease outside `core`, so release, verify and deploy
can all stand on it without standing on each other.
"""
