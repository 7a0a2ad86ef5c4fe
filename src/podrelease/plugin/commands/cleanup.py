"""`doit cleanup`: remove old released versions, then what nothing refers to any more."""

from __future__ import annotations

from ..root import ROOT_OPTIONS
from .base import RootCommand, Usage, say

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
        from ...manage import cleanup  # imported when used: doit imports every command on every run

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
