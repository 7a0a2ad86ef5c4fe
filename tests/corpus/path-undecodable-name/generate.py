"""A channel named by bytes no encoding decodes: shown escaped, never as a lone surrogate."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    folder = root / os.fsdecode(b"channels/st\xffg/web/frontend")
    folder.mkdir(parents=True)
    (folder / "1.0.0.yaml").write_text("images: {}\n")
