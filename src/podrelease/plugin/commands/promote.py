"""`doit promote`: release a released pod version in another channel, with the same images."""

from __future__ import annotations

import sys

from ..root import ROOT_OPTIONS
from .base import RootCommand
from .new import opt_new_channel


class Promote(RootCommand):
    name = "promote"
    doc_purpose = "release a released pod version in another channel, with the very same images"
    doc_usage = "[--new-channel] <from-channel>/<label_path>/<pod>/<version> <to-channel>"
    doc_description = """\
Writes channels/<to-channel>/<label_path>/<pod>/<version>.yaml pinning the
revision and every image and volume version to what the source pod directory's
pod.json records (and its `rule:` and `dirty:` if its instruction has them).
Then `doit release:<to-channel>/<label_path>/<pod>/<version>` builds nothing:
it links the same image ids. The source channel's parameters are not copied.
Refuses if the source is not released, if an image it uses is gone or changed
on disk, if the pod rule now names other images or volumes, if the target
instruction exists, or if the target channel does not exist yet (unless
--new-channel is given: a typo must not start a channel).
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""
    cmd_options = (opt_new_channel, *ROOT_OPTIONS)
    nargs = 2

    def run(self, root, params, args):
        from ...manage import authoring  # imported when used: doit imports every command on every run

        source = authoring.parse_pod_version(args[0])
        written = authoring.promote(root, source, authoring.parse_channel(args[1]), bool(params.get("new_channel")))
        sys.stdout.write(f"wrote {root.shown(written.path)}\n")
        return 0
