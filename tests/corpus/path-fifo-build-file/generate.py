"""A build file that is a fifo: reading it must not wait for a writer."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    (root / "shipyard/corpus").mkdir()
    os.mkfifo(root / "shipyard/corpus/build.yaml")
