"""A megabyte of `[`: PyYAML's composer would recurse a million times in C."""

from pathlib import Path


def generate(root: Path) -> None:
    (root / "channels/prod/web/frontend/1.1.0.yaml").write_text("[" * (1024 * 1024 - 1) + "\n")
