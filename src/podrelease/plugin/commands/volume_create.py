"""`doit volume-create`: pack a directory into a new volume version."""

from __future__ import annotations

import sys
from pathlib import Path

from ..root import ROOT_OPTIONS
from ..session import open_remote
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
Refuses an existing version; volumes are never overwritten. With a
registry (podrelease.yaml's `registry:` or $PODRELEASE_REGISTRY), it also
refuses a version the registry holds, and pushes the new volume there.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""
    cmd_options = ROOT_OPTIONS
    nargs = 2

    def run(self, root, params, args):
        from ...manage import volumes  # imported when used: doit imports every command on every run

        volume = volumes.parse_volume_version(args[0])
        remote = open_remote(root)
        if remote is not None and remote.has_volume(volume.label, volume.version):
            raise volumes.refuse(f"volume {volume} is already in the registry {remote.registry}; "
                                 "volumes are never overwritten (create a new version)")
        created = volumes.create_volume(root, volume, Path(args[1]))
        sys.stdout.write(
            f"created {root.shown(created.tarball)} ({created.entries} entries, sha512 {created.sha512[:16]}…)\n"
        )
        if remote is not None:
            remote.push_volume(volume.label, volume.version)
            sys.stdout.write(f"pushed {remote.registry.volume(volume.label.path, volume.label.name)}:{volume.version}\n")
        return 0
