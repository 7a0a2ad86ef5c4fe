"""`podrelease.yaml` at the release root: settings for the whole root.

Today it holds one: `registry: <host>[:<port>]/<prefix>`, the OCI registry
the root shares its artifacts through. `PODRELEASE_REGISTRY` wins over the
file (an empty value turns the registry off for one run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .documents import Fields, load

SETTINGS_FILE = "podrelease.yaml"
REGISTRY_ENV = "PODRELEASE_REGISTRY"
SETTINGS_KEYS = frozenset({"registry"})


@dataclass(frozen=True)
class Setting:
    """A value as written, and where: a file and line, or the environment variable."""

    text: str
    shown: str
    line: int | None


def registry_setting(root: Path) -> Setting | None:
    """The registry this root is shared through, as configured; None when there is none."""
    if REGISTRY_ENV in os.environ:
        text = os.environ[REGISTRY_ENV].strip()
        return Setting(text, REGISTRY_ENV, None) if text else None
    path = root / SETTINGS_FILE
    if not path.is_file():
        return None
    fields = Fields(load(path, SETTINGS_FILE))
    fields.mapping((), SETTINGS_KEYS, SETTINGS_FILE)
    value = fields.optional_text(("registry",), "registry")
    return Setting(value, SETTINGS_FILE, fields.doc.line(("registry",))) if value else None
