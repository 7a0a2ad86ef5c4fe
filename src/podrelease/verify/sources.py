"""The sources a release reads, loaded as a release would load them.

- build files: they load (a broken one stops every release).
- channel defaults: each `channels/<channel>/channel.yaml` loads (a broken
  one stops every release too).
- instructions: they load, and resolve against the build rules as a release
  would (the plan); a yanked one is noted on its pod home for the tip check.
"""

from __future__ import annotations

from ..core.errors import UserError, UserErrors
from ..model import instructions, rules
from ..model.plan import ImageBuild, PodAssembly, make_plan
from .report import Problems
from .scan import Scan


def load_build_files(scan: Scan, problems: Problems) -> tuple[list[rules.BuildFile], bool]:
    """Every build file that loads, and whether one did not."""
    loaded, failed = [], False
    for path, label_path in scan.root.build_files():
        scan.checked["build_files"] += 1
        try:
            loaded.append(rules.load_build_file(path, scan.root.shown(path), label_path))
        except UserError as err:
            problems.report_error("rule", err)
            failed = True
    return loaded, failed


def load_channel_defaults(scan: Scan, problems: Problems) -> tuple[dict[str, instructions.Parameters], bool]:
    """Each `channels/<channel>/channel.yaml`: a broken one stops every release."""
    defaults: dict[str, instructions.Parameters] = {}
    failed = False
    for home in scan.homes:
        channel = home.channel
        path = scan.root.channel_file(channel)
        if channel in defaults or not path.is_file():
            continue
        try:
            defaults[channel] = instructions.load_channel_defaults(path, scan.root.shown(path))
        except UserError as err:
            problems.report_error("instruction", err)
            failed = True
    return defaults, failed


def load_instructions(scan: Scan, problems: Problems) -> list[instructions.Instruction]:
    """Every instruction that loads; a pod home with one that does not is marked unreadable."""
    loaded = []
    for home in scan.homes:
        for path, regular in home.instructions:
            try:
                instruction = instructions.load_instruction(scan.root.instruction_path(home.channel, path, home.parts, regular))
            except UserError as err:
                problems.report_error("instruction", err)
                home.unreadable = True
                continue
            loaded.append(instruction)
            if instruction.yanked:
                home.yanked.add(instruction.version)
    return loaded


def plan(
    problems: Problems,
    build_files: list[rules.BuildFile],
    loaded: list[instructions.Instruction],
    defaults: dict[str, instructions.Parameters],
    source_errors: bool,
) -> list[PodAssembly]:
    """The pods a release would assemble, each instruction's that plans.

    Plan errors are reported as a release would report them, unless a
    broken build or channel file already explains why the plan fails.
    """
    try:
        return list(make_plan(build_files, loaded, defaults).pods.values())
    except UserErrors as err:
        if not source_errors:
            problems.report_error("instruction", err)
    planned: list[PodAssembly] = []
    for instruction in loaded:
        try:
            planned.extend(make_plan(build_files, [instruction], defaults).pods.values())
        except UserError:
            continue
    return planned


def builds(pods: list[PodAssembly]) -> list[ImageBuild]:
    """The image builds of the planned pods (yanked instructions build nothing)."""
    return [build for pod in pods if not pod.instruction.yanked for build in pod.images]
