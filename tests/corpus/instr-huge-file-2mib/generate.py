"""A 2 MiB instruction: refused by size before it is parsed."""

from pathlib import Path


def generate(root: Path) -> None:
    path = root / "channels/prod/web/frontend/1.1.0.yaml"
    with open(path, "w") as f:
        f.write("parameters:\n  args:\n")
        f.write("    - --verbose\n" * (2 * 1024 * 1024 // 16))
