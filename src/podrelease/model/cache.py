"""What earlier runs learnt, remembered between runs and checked against each file's identity.

A no-op `doit` in a large root spent most of its time re-reading and
re-planning files that had not changed. Two shortcuts, both keyed by each
file's (mtime, ctime, size, inode) and by this code's own identity:

- `InstructionCache`: each parsed instruction;
- `PlanCache`: the plan's index (`plan.PlanIndex`: every release, tip and
  recorded revision) for one exact set of build files, channel files and
  instructions. A run whose files are all as the index saw them knows
  what exists without reading a single instruction; it plans in full only
  when it has something to build.

As with git's index, a file changed less than RACY_NS before a cache is
saved is not trusted: a second change within the same clock tick would
leave its identity unchanged. The caches are only shortcuts: a missing,
unreadable or foreign cache is ignored, nothing is remembered from a run
that found a mistake, and each cache is replaced atomically.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

from .. import __version__
from ..core.fsops import replace_file
from . import documents, instructions, layout, plan, rules
from .instructions import Instruction
from .layout import ChannelScan, InstructionPath, ReleaseRoot

CACHE = Path(".podrelease") / "instructions.pickle"
PLAN_CACHE = Path(".podrelease") / "plan.pickle"
FORMAT = 2
RACY_NS = 2_000_000_000

Identity = tuple[int, int, int, int]


def _identity(path: Path | str) -> Identity:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _code_identity(*modules) -> tuple:
    """What makes remembered results stale besides the files: this code."""
    return (FORMAT, __version__, *(_identity(module.__file__) for module in modules))


def _read(path: Path, header: tuple):
    try:
        with open(path, "rb") as f:
            found, entries = pickle.load(f)
    except Exception:  # any unreadable or foreign cache is as good as none
        return None
    return entries if found == header else None


def _write(path: Path, header: tuple, entries) -> None:
    try:
        replace_file(path, pickle.dumps((header, entries), protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        pass  # a read-only root just goes without


class InstructionCache:
    def __init__(self, root: ReleaseRoot):
        self.path = root.path / CACHE
        self.header = (_code_identity(instructions, documents), str(root.path))
        self.known: dict[str, tuple[tuple, Instruction]] = _read(self.path, self.header) or {}
        self.seen: dict[str, tuple[tuple, Instruction]] = {}

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
        _write(self.path, self.header, entries)


class PlanCache:
    """The index of the plan made from exactly these files, if an earlier run saved it."""

    def __init__(self, root: ReleaseRoot, scan: ChannelScan, build_files: list[tuple[Path, str]]):
        self.path = root.path / PLAN_CACHE
        self.header = (_code_identity(instructions, documents, rules, plan, layout), str(root.path))
        self.inputs = _plan_inputs(root, scan, build_files)
        self.instructions = root.path / CACHE

    def index(self) -> plan.PlanIndex | None:
        """The remembered index, if every input is as it was when it was saved.

        Only beside the instruction cache it was saved with: the whole plan,
        when a run needs it, is made from that.
        """
        if self.inputs is None or not self.instructions.is_file():
            return None
        found = _read(self.path, self.header)
        if found is None or found[0] != self.inputs:
            return None
        return found[1]

    def save(self, index: plan.PlanIndex) -> None:
        """Remember the index of a plan made from the inputs (call once everything planned)."""
        if self.inputs is None:
            return
        settled = time.time_ns() - RACY_NS
        if any(identity is not None and max(identity[0], identity[1]) >= settled for _, identity in self.inputs):
            return  # some file may still change unseen within this clock tick
        _write(self.path, self.header, (self.inputs, index))


def _plan_inputs(root: ReleaseRoot, scan: ChannelScan, build_files: list[tuple[Path, str]]) -> tuple | None:
    """(path, identity) of every file a plan is made of; None when some can't be trusted.

    A bad channel folder is a mistake the full load reports; a symlink or
    special file where an instruction belongs is one too (None either way).
    """
    if scan.bad_channels or scan.unreadable:
        return None
    prefix = len(str(root.path)) + 1
    found: list[tuple[str, Identity | None]] = []
    try:
        for path, _ in build_files:
            found.append((str(path)[prefix:], _identity(path)))
        for channel in sorted({home.channel for home in scan.homes}):
            path = root.channel_file(channel)
            found.append((str(path)[prefix:], _identity(path) if os.path.lexists(path) else None))
        for home in scan.homes:
            for path, regular in home.instructions:
                if not regular:
                    return None
                found.append((str(path)[prefix:], _identity(path)))
    except OSError:
        return None
    return tuple(found)
