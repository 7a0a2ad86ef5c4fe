"""A pod folder whose name would start an error line of its own."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    folder = root / "channels/prod/web/fr\nontend"
    folder.mkdir(parents=True)
    (folder / "1.0.0.yaml").write_text("images: {}\n")
