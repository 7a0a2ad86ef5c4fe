"""`doit new`: write a new release instruction."""

from __future__ import annotations

import sys

from ...manage import authoring
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
