"""Parsed instructions remembered between runs, keyed by each file's identity.

A no-op `doit` in a large root spent most of its own time re-reading
instructions that had not changed. Each file is remembered with its
(mtime, ctime, size, inode); as with git's index, a file changed less than
RACY_NS before the cache was saved is not remembered, since a second change
within the same clock tick would leave those unchanged. The cache is only a
shortcut: a missing, unreadable or foreign cache is ignored, a file that
fails to load is never remembered, and the cache is replaced atomically.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

from .. import __version__
from ..core.fsops import replace_file
from . import documents, instructions
from .instructions import Instruction
from .layout import InstructionPath, ReleaseRoot

CACHE = Path(".podrelease") / "instructions.pickle"
FORMAT = 1
RACY_NS = 2_000_000_000


def _identity(path: Path | str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _code_identity() -> tuple:
    """What makes remembered results stale besides the files: this code."""
    return (FORMAT, __version__, _identity(instructions.__file__), _identity(documents.__file__))


class InstructionCache:
    def __init__(self, root: ReleaseRoot):
        self.path = root.path / CACHE
        self.header = (_code_identity(), str(root.path))
        self.known: dict[str, tuple[tuple, Instruction]] = self._read()
        self.seen: dict[str, tuple[tuple, Instruction]] = {}

    def _read(self) -> dict:
        try:
            with open(self.path, "rb") as f:
                header, entries = pickle.load(f)
        except Exception:  # any unreadable or foreign cache is as good as none
            return {}
        return entries if header == self.header else {}

    def load(self, where: InstructionPath) -> Instruction:
        """The instruction at `where`: remembered if the file is unchanged, else read."""
        try:
            identity = _identity(where.path)
        except OSError:
            return instructions.load_instruction(where)  # reports why it can't be read
        hit = self.known.get(where.shown)
        instruction = hit[1] if hit is not None and hit[0] == identity else instructions.load_instruction(where)
        self.seen[where.shown] = (identity, instruction)
        return instruction

    def save(self) -> None:
        """Remember what this run read (call once everything loaded and planned)."""
        settled = time.time_ns() - RACY_NS
        entries = {k: v for k, v in self.seen.items() if max(v[0][0], v[0][1]) < settled}
        if entries == self.known or not entries:
            return
        try:
            replace_file(self.path, pickle.dumps((self.header, entries), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass  # a read-only root just goes without
