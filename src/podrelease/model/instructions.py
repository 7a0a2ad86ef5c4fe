"""Release instructions: `channels/<channel>/<label_path>/<pod>/<version>.yaml`.

The path says which pod, channel and version; the file says only what
differs from the defaults (an empty file is a valid instruction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError, UserErrors
from ..core.names import MAX_NAME, Label, check_version, quoted
from .documents import ANY_KEY, Fields, load
from .layout import InstructionPath
from .rules import environment

INSTRUCTION_KEYS = frozenset({"rule", "revision", "dirty", "images", "volumes", "parameters", "yanked", "reason"})
PARAMETER_KEYS = frozenset({"args", "environment"})
CHANNEL_KEYS = frozenset({"parameters"})


@dataclass(frozen=True, slots=True)
class Parameters:
    """A channel's customization: args appended to every app, environment added."""

    args: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()

    def over(self, base: Parameters) -> Parameters:
        """These parameters merged over `base`: args appended, environment overriding."""
        environment = dict(base.environment)
        environment.update(self.environment)
        return Parameters(base.args + self.args, tuple(environment.items()))


@dataclass(frozen=True, slots=True)
class Pin:
    """An explicit version for one image or volume of the pod."""

    label: Label
    version: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Instruction:
    path: Path
    shown: str
    channel: str
    pod: Label  # from the path
    version: str
    rule: Label  # the pod rule; the pod's own label unless `rule:` says otherwise
    rule_line: int | None
    revision: str | None = None
    revision_line: int | None = None
    dirty: bool = False  # `revision` had uncommitted changes on top (`doit new` records it)
    images: tuple[Pin, ...] = ()
    volumes: tuple[Pin, ...] = ()
    parameters: Parameters = Parameters()
    yanked: bool = False
    reason: str | None = None  # why it was yanked

    def pinned(self, pins: tuple[Pin, ...], label: Label) -> Pin | None:
        return next((p for p in pins if p.label == label), None)


def load_instruction(where: InstructionPath) -> Instruction:
    doc = load(where.path, where.shown)
    fields = Fields(doc)
    top = fields.mapping((), INSTRUCTION_KEYS, "a release instruction")
    rule = where.pod
    if top.get("rule") is not None:
        rule = _label(fields, ("rule",), where.pod.path)
    yanked = fields.flag(("yanked",), "yanked") if top.get("yanked") is not None else False
    if "reason" in top and not yanked:
        raise doc.error(("reason",), "reason is only for a yanked instruction (yanked: true)")
    revision = fields.optional_text(("revision",), "revision")
    if revision is not None and len(revision) > MAX_NAME:  # it goes into pod.json, which hosts bound alike
        raise doc.error(("revision",), f"revision {quoted(revision)} is longer than {MAX_NAME} characters")
    return Instruction(
        path=where.path,
        shown=where.shown,
        channel=where.channel,
        pod=where.pod,
        version=where.version,
        rule=rule,
        rule_line=doc.line(("rule",)) if "rule" in top else None,
        revision=revision,
        revision_line=doc.line(("revision",)) if "revision" in top else None,
        dirty=fields.flag(("dirty",), "dirty") if top.get("dirty") is not None else False,
        images=_pins(fields, "images"),
        volumes=_pins(fields, "volumes"),
        parameters=_parameters(fields),
        yanked=yanked,
        reason=fields.optional_text(("reason",), "reason"),
    )


def _parameters(fields: Fields) -> Parameters:
    fields.mapping(("parameters",), PARAMETER_KEYS, "parameters")
    return Parameters(
        args=fields.texts(("parameters", "args"), "args"),
        environment=environment(fields, ("parameters", "environment")),
    )


def load_channel_defaults(path: Path, shown: str) -> Parameters:
    """`channels/<channel>/channel.yaml`: parameters for every pod of the channel."""
    fields = Fields(load(path, shown))
    fields.mapping((), CHANNEL_KEYS, "a channel file")
    return _parameters(fields)


def _label(fields: Fields, where, default_path: str) -> Label:
    text = fields.text(where, where[-1])  # names the key: "rule must be a string"
    try:
        return Label.parse(text, default_path=default_path)
    except ValueError as err:
        raise fields.doc.error(where, str(err)) from None


def _pins(fields: Fields, key: str) -> tuple[Pin, ...]:
    pins = []
    for text in fields.mapping((key,), ANY_KEY, key):
        where = (key, text)
        try:
            label = Label.parse(text)
        except ValueError as err:
            raise fields.doc.error(where, str(err)) from None
        version = fields.text(where, f"version of {text}")
        try:
            check_version(version, f"version of {text}")
        except ValueError as err:
            raise fields.doc.error(where, str(err)) from None
        pins.append(Pin(label, version, fields.doc.line(where)))
    return tuple(pins)


def load_all(paths: list[InstructionPath], load=None) -> list[Instruction]:
    """Load every instruction, reporting the first mistake of each file.

    `load` reads one instruction (default: `load_instruction`; a cache may
    answer instead)."""
    load = load or load_instruction
    instructions, errors = [], []
    for where in paths:
        try:
            instructions.append(load(where))
        except UserError as err:
            errors.append(err)
    if errors:
        raise UserErrors(errors)
    return instructions
