"""Instructions against their pod directories.

A released instruction agrees with its pod directory's `pod.json`: the
revision, the pinned and default image and volume versions, and the
instruction's own channel parameters. A problem is reported at the
instruction's line, found only when there is a problem (`_Lines`).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from ..core.names import quoted
from ..core.podjson import PodJson
from ..model.documents import Document
from ..model.documents import load as load_yaml
from ..model.instructions import Instruction
from .report import Problems
from .scan import Scan


def check_agreement(scan: Scan, problems: Problems, instruction: Instruction) -> None:
    """A released instruction and its pod directory say the same."""
    pod = scan.root.pod_dir(instruction.channel, instruction.pod, instruction.version)
    home = scan.homes_by_folder.get(pod.parent)
    found = home.pod_dirs.get(instruction.version) if home else None
    if found is None or found.doc is None:
        return  # pending, or its pod.json is already reported
    doc, shown = found.doc, instruction.shown
    pod_shown = scan.root.shown(pod)
    lines = _Lines(instruction.path, shown)
    if doc.revision != instruction.revision:
        problems.report(
            "instruction", shown,
            f"revision is {quoted(instruction.revision)}, but {pod_shown} was released with {quoted(doc.revision)}",
            line=lines.line(("revision",)),
        )
    released_images = {image.label: image.version for image in doc.images}
    released_volumes = {volume.label: volume.version for volume in doc.volumes}
    for key, pins, released in (
        ("images", instruction.images, released_images),
        ("volumes", instruction.volumes, released_volumes),
    ):
        what = key[:-1]
        for pin in pins:
            if pin.label not in released:
                problems.report("instruction", shown, f"pins {what} {pin.label}, which {pod_shown} does not have", line=pin.line)
            elif released[pin.label] != pin.version:
                problems.report(
                    "instruction", shown,
                    f"pins {what} {pin.label} at {pin.version}, but {pod_shown} has {released[pin.label]}",
                    line=pin.line,
                )
        pinned = {p.label for p in pins}
        for label, version in released.items():
            if label not in pinned and version != instruction.version:
                problems.report(
                    "instruction", shown,
                    f"{pod_shown} has {what} {label} at {version}, but the instruction asks for {instruction.version} (no pin)",
                    line=lines.line((key,)),
                )
    check_parameters(problems, instruction, doc, pod_shown, lines)


def check_parameters(problems: Problems, instruction: Instruction, doc: PodJson, pod_shown: str, lines: _Lines) -> None:
    # only the instruction's own parameters: they end every exec and override the
    # channel's defaults, which may have changed since (that changes new releases only)
    args = list(instruction.parameters.args)
    environment = dict(instruction.parameters.environment)
    for app in doc.manifest.get("apps", []):
        inner = app.get("app")
        if not isinstance(inner, dict):
            continue
        exec_ = inner.get("exec") or []
        if args and (len(exec_) < len(args) or exec_[-len(args):] != args):
            problems.report(
                "instruction", instruction.shown,
                f"parameters.args {args} are not what app {quoted(app.get('name'))} of {pod_shown} ends its exec with",
                line=lines.line(("parameters", "args")),
            )
        have = {e.get("name"): e.get("value") for e in inner.get("environment") or [] if isinstance(e, dict)}
        wrong = sorted(k for k, v in environment.items() if have.get(k) != v)
        if wrong:
            problems.report(
                "instruction", instruction.shown,
                f"parameters.environment {', '.join(wrong)} differ from app {quoted(app.get('name'))} of {pod_shown}",
                line=lines.line(("parameters", "environment")),
            )


class _Lines:
    """Line numbers in an instruction, parsed only if a problem needs one."""

    def __init__(self, path: Path, shown: str):
        self.path, self.shown = path, shown
        self._document: Document | None = None

    def line(self, where: tuple) -> int | None:
        if self._document is None:
            try:
                self._document = load_yaml(self.path, self.shown)
            except UserError:
                return None
        return self._document.line(where)

