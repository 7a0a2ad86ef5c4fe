"""Symlinks in build folders: to a sibling folder, /etc and /etc/passwd, and one given a mode."""

import os
from pathlib import Path


def generate(root: Path) -> None:
    os.symlink("../web", root / "shipyard/rootfs-src-symlink-escape/web")
    os.symlink("/etc", root / "shipyard/rootfs-src-symlink-followed/etc")
    os.symlink("/etc/passwd", root / "shipyard/pod-file-symlink-escape/passwd")
    os.symlink("/etc/hosts", root / "shipyard/rootfs-mode-on-symlink/hosts")
