"""`doit volume-create`: pack a directory into a new volume version."""

from __future__ import annotations

import sys
from pathlib import Path

from ...manage import volumes
from ..root import ROOT_OPTIONS
from .base import RootCommand


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
