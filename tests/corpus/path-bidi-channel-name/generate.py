"""A channel whose name reorders the rest of the line on a terminal."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    folder = root / "channels/pro\u202ed/web/frontend"
    folder.mkdir(parents=True)
    (folder / "1.0.0.yaml").write_text("images: {}\n")
