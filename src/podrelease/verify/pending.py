"""What `doit` cannot finish, and what it can no longer see.

- A pending instruction (not yanked, no pod.json yet) whose volume version
  is missing cannot be released: `doit` would stop at it. (One whose pod
  rule or image rule is missing does not plan: `sources.plan` reports it as
  a release would.)
- A released version whose instruction was deleted still counts for tip
  (`model.tip`), but `doit` can no longer yank or check it: a warning, and
  an error when tip points at it (only a yanking instruction could move
  tip away from it).
"""

from __future__ import annotations

import os

from ..build.assembly import volume_files
from ..model.layout import INSTRUCTION_SUFFIX, POD_JSON
from ..model.plan import PodAssembly
from .report import WARNING, Problems
from .scan import Home, Scan


def check_pending(scan: Scan, problems: Problems, pod: PodAssembly) -> None:
    """A pending instruction's volume versions exist."""
    instruction = pod.instruction
    if instruction.yanked:
        return
    if (scan.root.pod_dir(instruction.channel, instruction.pod, instruction.version) / POD_JSON).is_file():
        return
    for volume in pod.volumes:
        if volume_files(scan.root, volume.mount.label, volume.version, checked=False):
            continue
        pin = instruction.pinned(instruction.volumes, volume.mount.label)
        expected = scan.root.shown(scan.root.volume_dir(volume.mount.label, volume.version))
        problems.report(
            "instruction", instruction.shown,
            f"cannot be released: volume {volume.mount.label} version {volume.version} is missing ({expected}/); "
            "releases never create volumes (doit volume-create makes one)",
            line=pin.line if pin else None,
        )


def check_without_instruction(scan: Scan, problems: Problems, home: Home) -> None:
    """Every released version has its instruction."""
    have = {path.name[: -len(INSTRUCTION_SUFFIX)] for path, _ in home.instructions if path.name.endswith(INSTRUCTION_SUFFIX)}
    tip = _tip_target(home)
    for version, pod in sorted(home.pod_dirs.items()):
        if version in have or not (pod.path / POD_JSON).is_file():
            continue
        instruction = scan.root.shown(home.folder / (version + INSTRUCTION_SUFFIX))
        if version == tip:
            problems.report("pod", pod.path, f"tip points at this version, but its instruction {instruction} was deleted: "
                            "restore it from git (doit cannot yank or check a version without one)")
        else:
            problems.report("pod", pod.path, f"released, but its instruction {instruction} was deleted: restore it from git, "
                            "or remove the version with doit cleanup", severity=WARNING)


def _tip_target(home: Home) -> str | None:
    if home.tip is None:
        return None
    try:
        return os.readlink(home.tip)
    except OSError:
        return None
