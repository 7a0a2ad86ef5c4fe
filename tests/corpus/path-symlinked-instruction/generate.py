"""An instruction that is a symlink to a file outside the release root."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    os.symlink("/etc/passwd", root / "channels/prod/web/frontend/2.0.0.yaml")
