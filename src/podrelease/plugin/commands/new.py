"""`doit new`: write a new release instruction."""

from __future__ import annotations

import sys

from ..root import ROOT_OPTIONS
from .base import RootCommand

opt_from = {
    "name": "from_version",
    "short": "",
    "long": "from",
    "type": str,
    "default": None,
    "metavar": "VERSION",
    "help": "copy the rule, pins and parameters of this version's instruction (same channel and pod)",
}


opt_allow_dirty = {
    "name": "allow_dirty",
    "short": "",
    "long": "allow-dirty",
    "type": bool,
    "default": False,
    "help": "write it although shipyard/ has uncommitted changes (records `dirty: true`; images build from the revision, without them)",
}

opt_new_channel = {
    "name": "new_channel",
    "short": "",
    "long": "new-channel",
    "type": bool,
    "default": False,
    "help": "the channel does not exist yet: start it (without this a mistyped channel is refused)",
}


class New(RootCommand):
    name = "new"
    doc_purpose = "write a new release instruction, its revision taken from the source checkout"
    doc_usage = "[--from VERSION] [--allow-dirty] [--new-channel] <channel>/<label_path>/<pod>/<version>"
    doc_description = """\
Writes channels/<channel>/<label_path>/<pod>/<version>.yaml with `revision:`
set to `git rev-parse HEAD` of the checkout holding shipyard/. If shipyard/
has uncommitted changes (modified, staged or untracked files) it refuses,
naming them: images are built from the recorded revision, so the changes
would silently be left out. --allow-dirty writes it anyway, with
`dirty: true`. Outside a git checkout no revision is written (a note says
so on stderr).
Without --from nothing is pinned: every image and volume defaults to the new
pod version. With --from VERSION (same channel and pod) the rule and the
parameters are copied, and every image and volume is pinned to the version
that release used (its pod.json if released, else what its instruction
resolves to); then change the pins of what the new version changes.
Refuses a channel that does not exist yet unless --new-channel is given
(a typo must not start a channel), an existing instruction (or one naming
the same version, 1.0 = 1.0.0, or an already released version), a pod rule
that does not exist and a pin the rule does not have; then nothing is
written. The file appears whole.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir),
searched upwards from the current folder."""
    cmd_options = (opt_from, opt_allow_dirty, opt_new_channel, *ROOT_OPTIONS)
    nargs = 1

    def run(self, root, params, args):
        from ...manage import authoring  # imported when used: doit imports every command on every run

        target = authoring.parse_pod_version(args[0])
        written = authoring.new_instruction(root, target, params.get("from_version"),
                                            allow_dirty=bool(params.get("allow_dirty")), new_channel=bool(params.get("new_channel")))
        for note in written.notes:
            self.error(f"note: {note}")
        sys.stdout.write(f"wrote {root.shown(written.path)}\n")
        return 0
