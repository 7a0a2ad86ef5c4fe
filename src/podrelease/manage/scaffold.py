"""`doit init`: a new release root that releases with plain `doit`.

It holds a one-line dodo.py, a .gitignore of the built artifacts, one build
file (an image built from the build machine's static busybox, serving one
page, and a pod of it with no volume) and one release instruction. Nothing
is written if any of those files or folders is already there: init never
touches an existing root. A new folder is built aside and renamed into place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core import fsops
from ..core.errors import UserError

DODO = "from podrelease.tasks import *  # noqa: F401,F403 -- podrelease's task creators\n"

GITIGNORE = """\
# what doit builds: images, bundles, pod directories and tips
/images/
/bundles/
# everything under channels/ but the instructions (and channel.yaml)
/channels/**
!/channels/**/
!/channels/**/*.yaml
/.doit.db*
/.podrelease/
__pycache__/
"""

BUILD_FILE = """\
# Build rules of the label path `example`: the image and the pod //example:hello.
# `doit help` lists the commands; docs/formats.md of podrelease describes every key.
images:
  hello:
    # built by a command: a copy of the build machine's static busybox
    # (Debian: apt-get install busybox-static) and the applets the app uses
    command:
      - sh
      - -c
      - >-
        if [ ! -x /bin/busybox ]; then
        echo "//example:hello: /bin/busybox is missing (Debian: apt-get install busybox-static)" >&2;
        exit 1;
        fi &&
        umask 022 &&
        mkdir -p "$ROOTFS/bin" &&
        cp /bin/busybox "$ROOTFS/bin/busybox" &&
        chmod 0755 "$ROOTFS/bin/busybox" &&
        ln -s busybox "$ROOTFS/bin/sh" &&
        ln -s busybox "$ROOTFS/bin/httpd"
    # then these files, relative to this folder, are copied in
    rootfs:
      - {src: www/, dst: /srv/www/}
    app:
      exec: [/bin/httpd, -f, -p, "8080", -h, /srv/www]
      ports:
        - {name: http, protocol: tcp, port: 8080}

pods:
  hello:
    images: [hello]
    health: {http: {port: 8080, path: /}, timeout: 20}
"""

PAGE = "<p>hello from podrelease</p>\n"

INSTRUCTION = """\
# Release version 1.0.0 of //example:hello in the channel staging.
# An empty instruction is valid: the image is built at the pod's version.
# `doit new staging/example/hello/1.1.0` writes the next one (with the git revision).
"""


@dataclass(frozen=True)
class Scaffold:
    root: Path
    written: tuple[str, ...]  # paths relative to the root


FILES = (
    ("dodo.py", DODO),
    (".gitignore", GITIGNORE),
    ("shipyard/example/build.yaml", BUILD_FILE),
    ("shipyard/example/www/index.html", PAGE),
    ("channels/staging/example/hello/1.0.0.yaml", INSTRUCTION),
)
TAKEN = ("dodo.py", "shipyard", "channels", "images", "volumes", "bundles")


def init_root(folder: Path) -> Scaffold:
    """Write the files of a new release root into `folder` (made if missing)."""
    folder = folder.absolute()
    if folder.exists() and not folder.is_dir():
        raise UserError(str(folder), None, "is not a folder")
    taken = [name for name in TAKEN + (".gitignore",) if (folder / name).exists() or (folder / name).is_symlink()]
    if taken:
        raise UserError(str(folder), None, f"already holds {', '.join(taken)}: doit init writes only into a folder without them")
    try:
        if folder.exists():
            _write(folder)
        else:  # a new folder appears whole
            fsops.make_dirs(folder.parent)
            with fsops.building_dir(folder) as tmp:
                _write(tmp)
    except OSError as err:
        raise UserError(str(folder), None, f"cannot be written: {err.strerror or err}") from None
    return Scaffold(folder, tuple(relative for relative, _ in FILES))


def _write(folder: Path) -> None:
    for relative, text in FILES:
        path = folder / relative
        fsops.make_dirs(path.parent)
        fsops.write_file(path, text.encode(), 0o644)
