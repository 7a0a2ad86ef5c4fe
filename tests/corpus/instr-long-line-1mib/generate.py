"""A label on one line just under 1 MiB: the message quotes only its start."""

from pathlib import Path


def generate(root: Path) -> None:
    path = root / "channels/prod/web/frontend/1.1.0.yaml"
    path.write_text("rule: //web:" + "a" * (1024 * 1024 - 20) + "\n")
