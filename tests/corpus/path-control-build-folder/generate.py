"""A label path segment with ESC ] 0; ... BEL in it."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    folder = root / "shipyard/web/x\x1b]0;owned\x07"
    folder.mkdir()
    (folder / "build.yaml").write_text("images: {}\n")
