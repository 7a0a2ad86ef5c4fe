"""doit commands that podrelease adds through the `doit.COMMAND` entry point.

`doit verify`, `doit new`, `doit promote`, `doit cleanup` and
`doit volume-create` work in any release root once podrelease is installed.
They find the release root as `podrelease.tasks` does (`RELEASE_ROOT`, else
the folder doit would run the dodo file in) but never import the dodo file
or `podrelease.tasks`: those stop at the first broken build file or
instruction, while verify must report every problem, and the authoring
commands must not build or release anything.

This module is only glue: options, arguments and one-line errors. What the
commands do lives in `verification`, `authoring`, `cleanup` and `volumes`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from doit.cmd_base import Command, opt_cwd, opt_dodo, opt_seek_file

from ..manage import authoring
from ..manage import cleanup
from ..manage import volumes
from ..core.errors import UserError
from ..model.layout import ReleaseRoot
from ..verify.verifier import verify

opt_json = {
    "name": "json",
    "short": "",
    "long": "json",
    "type": bool,
    "default": False,
    "help": "print one JSON document {\"problems\": [...], \"checked\": {...}} instead of lines",
}

opt_strict = {
    "name": "strict",
    "short": "",
    "long": "strict",
    "type": bool,
    "default": False,
    "help": "exit 1 on warnings (drift) too, not only on errors",
}

opt_from = {
    "name": "from_version",
    "short": "",
    "long": "from",
    "type": str,
    "default": None,
    "metavar": "VERSION",
    "help": "copy the rule, pins and parameters of this version's instruction (same channel and pod)",
}

opt_keep = {
    "name": "keep",
    "short": "",
    "long": "keep",
    "type": int,
    "default": None,
    "metavar": "N",
    "help": "keep the newest N released versions of each pod in each channel (required)",
}

opt_protect = {
    "name": "protect",
    "short": "",
    "long": "protect",
    "type": list,
    "default": [],
    "metavar": "VERSION",
    "help": "never remove this version: <channel>/<label_path>/<pod>/<version>, or a bare version "
    "(in every channel and pod); repeatable",
}

opt_volumes = {
    "name": "volumes",
    "short": "",
    "long": "volumes",
    "type": bool,
    "default": False,
    "help": "also remove volume versions no remaining pod and no pending instruction refers to",
}

opt_dry_run = {
    "name": "dry_run",
    "short": "",
    "long": "dry-run",
    "type": bool,
    "default": False,
    "help": "print what would be removed; change nothing",
}

USAGE_ERROR = 3  # doit's code for an error before anything is checked
REFUSED = 1  # the command understood what was asked and refused it, or it failed
ROOT_OPTIONS = (opt_dodo, opt_cwd, opt_seek_file)


def dodo_folder(dodo_file: str, seek_parent: bool) -> Path | None:
    """The folder of the dodo file, found the way `doit.loader.get_module` finds it."""
    if os.path.isabs(dodo_file):
        return Path(dodo_file).parent if os.path.exists(dodo_file) else None
    if not seek_parent:
        path = os.path.abspath(dodo_file)
        return Path(path).parent if os.path.exists(path) else None
    folder = Path.cwd()
    while True:
        if (folder / dodo_file).exists():
            return (folder / dodo_file).parent
        if folder.parent == folder:
            return None
        folder = folder.parent


def release_root(params: dict) -> ReleaseRoot:
    """`RELEASE_ROOT`, else doit's working folder: `--dir`, else the dodo file's folder, else here.

    doit runs a dodo file in its own folder unless `--dir` says otherwise,
    and `podrelease.tasks` takes that working folder as the release root.
    """
    if params.get("cwdPath"):
        default = Path(os.path.abspath(params["cwdPath"]))
    else:
        default = dodo_folder(params.get("dodoFile") or "dodo.py", bool(params.get("seek_file"))) or Path.cwd()
    return ReleaseRoot.from_environment(default)


def root_problem(root: ReleaseRoot) -> str | None:
    """Why `root` cannot be a release root, or None."""
    if not root.path.is_dir():
        return f"release root {root.path} is not a directory"
    if not any((root.path / name).is_dir() for name in ("shipyard", "channels", "images")):
        return f"{root.path} is not a release root (it has no shipyard/, channels/ or images/)"
    return None


class Verify(Command):
    name = "verify"
    doc_purpose = "check the release root's images, pods, tips and instructions; repair nothing"
    doc_usage = "[--json] [--strict]"
    doc_description = """\
Checks every image (image.aci decompresses; its sha512 equals the sha512 file,
build.json and every pod.json id naming it), every pod directory (pod.json
parses and matches the spec; every symlink is relative, resolves and stays
inside the release root; the referenced image and volume versions exist and
volume files keep their sha512), every tip (points at the highest released
version) and every instruction (loads; agrees with its pod directory).
Warns when an image's rule or input files changed since its newest version was
built (drift: the version was not bumped).
Prints one `path[:line]: message` line per problem, then a summary.
Exit status: 0 if there is no error (warnings allowed unless --strict), 1
otherwise. Reads only; never writes.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""

    cmd_options = (opt_json, opt_strict, opt_dodo, opt_cwd, opt_seek_file)

    def execute(self, params, args):
        if args:
            sys.stderr.write(f"ERROR: verify takes no arguments (got {' '.join(args)})\n")
            return USAGE_ERROR
        root = release_root(params)
        problem = root_problem(root)
        if problem:
            sys.stderr.write(f"ERROR: {problem}\n")
            return USAGE_ERROR
        report = verify(root)
        try:
            if params.get("json"):
                sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
            else:
                for problem in report.problems:
                    sys.stdout.write(f"{problem}\n")
                sys.stdout.write(report.summary() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `doit verify | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1 if report.failed(strict=bool(params.get("strict"))) else 0


# ---------------------------------------------------------------- authoring and housekeeping


class Usage(Exception):
    """The command line itself is wrong: exit 3 like doit does, before anything is read."""


class RootCommand(Command):
    """A podrelease command run in a release root; its errors are one line each.

    A mistake located in a file prints as `path:line: message`; any other
    refusal as `doit <command>: message`. Options may follow the positional
    arguments (`doit new staging/web/frontend/1.3.0 --from 1.2.0`), although
    doit's getopt stops at the first positional one.
    """

    nargs = 0  # positional arguments the command takes

    def execute(self, params, args):
        try:
            args = self.interleaved(params, list(args))
            if len(args) != self.nargs:
                raise Usage(f"takes {self.nargs} argument{'s' if self.nargs != 1 else ''} ({self.doc_usage.strip()}); got {len(args)}")
            root = release_root(params)
            problem = root_problem(root)
            if problem:
                raise Usage(problem)
            return self.run(root, params, args)
        except Usage as err:
            self.error(str(err))
            return USAGE_ERROR
        except UserError as err:
            for one in getattr(err, "errors", [err]):
                if one.path is None:
                    self.error(one.message)
                else:
                    sys.stderr.write(f"{one}\n")
            return REFUSED
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            self.error(f"{where}{err.strerror or err}")
            return REFUSED

    def interleaved(self, params, args: list[str]) -> list[str]:
        """Positional arguments, with any options among them parsed into `params`."""
        positional = []
        while args:
            if args[0] == "--":
                return positional + args[1:]
            if args[0].startswith("-") and args[0] != "-":
                params, args = self.cmdparser.parse_only(args, params)
            else:
                positional.append(args.pop(0))
        return positional

    def error(self, message: str) -> None:
        sys.stderr.write(f"doit {self.name}: {message}\n")

    def run(self, root: ReleaseRoot, params, args) -> int:  # pragma: no cover
        raise NotImplementedError


class New(RootCommand):
    name = "new"
    doc_purpose = "write a new release instruction, its revision taken from the source checkout"
    doc_usage = "[--from VERSION] <channel>/<label_path>/<pod>/<version>"
    doc_description = """\
Writes channels/<channel>/<label_path>/<pod>/<version>.yaml with `revision:`
set to `git rev-parse HEAD` of the checkout holding shipyard/, and
`dirty: true` if shipyard/ has uncommitted changes (modified, staged or
untracked files). Outside a git checkout no revision is written (a note says
so on stderr).
Without --from nothing is pinned: every image and volume defaults to the new
pod version. With --from VERSION the rule, the image and volume pins and the
parameters of that instruction (same channel and pod) are copied.
Refuses an existing instruction (or one naming the same version, 1.0 = 1.0.0,
or an already released version), a pod rule that does not exist and a pin
the rule does not have; then nothing is written. The file appears whole.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""
    cmd_options = (opt_from, *ROOT_OPTIONS)
    nargs = 1

    def run(self, root, params, args):
        target = authoring.parse_pod_version(args[0])
        written = authoring.new_instruction(root, target, params.get("from_version"))
        for note in written.notes:
            self.error(f"note: {note}")
        sys.stdout.write(f"wrote {root.shown(written.path)}\n")
        return 0


class Promote(RootCommand):
    name = "promote"
    doc_purpose = "release a released pod version in another channel, with the very same images"
    doc_usage = "<from-channel>/<label_path>/<pod>/<version> <to-channel>"
    doc_description = """\
Writes channels/<to-channel>/<label_path>/<pod>/<version>.yaml pinning the
revision and every image and volume version to what the source pod directory's
pod.json records (and its `rule:` and `dirty:` if its instruction has them).
Then `doit release:<to-channel>/<label_path>/<pod>/<version>` builds nothing:
it links the same image ids. The source channel's parameters are not copied.
Refuses if the source is not released, if an image it uses is gone or changed
on disk, if the pod rule now names other images or volumes, or if the target
instruction exists.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""
    cmd_options = ROOT_OPTIONS
    nargs = 2

    def run(self, root, params, args):
        source = authoring.parse_pod_version(args[0])
        written = authoring.promote(root, source, authoring.parse_channel(args[1]))
        sys.stdout.write(f"wrote {root.shown(written.path)}\n")
        return 0


class Cleanup(RootCommand):
    name = "cleanup"
    doc_purpose = "remove old released versions, then the images nothing refers to any more"
    doc_usage = "--keep N [--protect VERSION]... [--volumes] [--dry-run]"
    doc_description = """\
Per channel and pod, removes the released versions beyond the newest N
(numeric order), never the one tip points at, never a --protect'ed one.
A removed version's instruction is removed too, before its pod directory:
left behind, the next `doit` would release it again. The release root is a
git-tracked record; the instruction stays in its history.
Then removes every image version that no remaining pod directory (in any
channel) links to or names in its pod.json, and that no instruction not yet
released needs. Volumes likewise, only with --volumes (people provide them).
Bundles are left alone: they are self-contained copies.
--protect takes <channel>/<label_path>/<pod>/<version>, or a bare version
to protect it in every channel and pod; a --protect naming no released
version is refused (a typo must not protect nothing).
Each directory is renamed to a .tmp- sibling, then deleted, holding the
release tasks' locks: a reader or a concurrent release never sees half of
one, and a killed cleanup leaves only a leftover the next run sweeps.
Refuses to start if a build file, channel file or instruction does not load
(what the pending instructions need would be unknown).
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""
    cmd_options = (opt_keep, opt_protect, opt_volumes, opt_dry_run, *ROOT_OPTIONS)

    def run(self, root, params, args):
        if params.get("keep") is None:
            raise Usage("--keep N is required (how many released versions of each pod to keep)")
        options = cleanup.Options(
            keep=params["keep"],
            protect=tuple(cleanup.parse_protect(text) for text in params.get("protect") or ()),
            volumes=bool(params.get("volumes")),
            dry_run=bool(params.get("dry_run")),
        )
        decision = cleanup.cleanup(root, options, say)
        say(cleanup.summary(decision, options.dry_run))
        return 0


class VolumeCreate(RootCommand):
    name = "volume-create"
    doc_purpose = "pack a directory into a new volume version (releases never create volumes)"
    doc_usage = "<label>@<version> <directory>"
    doc_description = """\
Writes volumes/<label_path>/<name>/<version>/<name>.tar.gz from the contents
of <directory>, e.g. `doit volume-create //web:static@1.1.0 ./static`.
The tarball is deterministic: entries sorted, named relative to the
directory, mtime 0, uid/gid 0, no owner names, modes 0755 (directories and
executables) or 0644, relative symlinks kept (others refused), gzip without
a time or name. It is built aside and renamed into place.
Refuses an existing version; volumes are never overwritten.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""
    cmd_options = ROOT_OPTIONS
    nargs = 2

    def run(self, root, params, args):
        volume = volumes.parse_volume_version(args[0])
        created = volumes.create_volume(root, volume, Path(args[1]))
        sys.stdout.write(
            f"created {root.shown(created.tarball)} ({created.entries} entries, sha512 {created.sha512[:16]}…)\n"
        )
        return 0


def say(line: str) -> None:
    """One line of progress, flushed: a long cleanup shows what it has done so far."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
