"""An instruction whose file name clears the screen and starts a line of its own."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    home = root / "channels/prod/web/frontend"
    (home / "1.2\x1b[2J\x1b[H\n.yaml").write_text((home / "1.1.0.yaml").read_text())
