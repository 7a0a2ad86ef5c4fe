"""More values than any instruction needs, without an alias: refused while parsing."""

from pathlib import Path


def generate(root: Path) -> None:
    items = "\n".join("    - --flag" for _ in range(60_000))
    (root / "channels/prod/web/frontend/1.1.0.yaml").write_text(f"parameters:\n  args:\n{items}\n")
