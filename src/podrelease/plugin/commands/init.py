"""`doit init [DIR]`: scaffold a release root that releases with plain `doit`."""

from __future__ import annotations

import sys
from pathlib import Path

from doit.cmd_base import Command

from ...core.errors import PodreleaseError
from .base import REFUSED, USAGE_ERROR


class Init(Command):
    name = "init"
    doc_purpose = "scaffold a release root: dodo.py, .gitignore, one example rule and one instruction"
    doc_usage = "[DIR]"
    doc_description = """\
Writes into DIR (default: the current folder; made if missing):
  dodo.py                                    from podrelease.tasks import *
  .gitignore                                 the built artifacts (images/, bundles/, pod directories, tips)
  shipyard/example/build.yaml                the image and pod //example:hello (busybox httpd serving a page)
  shipyard/example/www/index.html            the page
  channels/staging/example/hello/1.0.0.yaml  an instruction releasing version 1.0.0 in staging
Then `doit` in DIR releases it. The image copies the build machine's
/bin/busybox (Debian's busybox-static). Refuses a DIR that already holds
dodo.py, .gitignore, shipyard/, channels/, images/, volumes/ or bundles/;
then nothing is written."""

    def execute(self, params, args):
        from ...manage import scaffold  # imported when used: doit imports every command on every run

        if len(args) > 1:
            sys.stderr.write(f"doit init: takes at most one argument (DIR); got {len(args)}\n")
            return USAGE_ERROR
        try:
            made = scaffold.init_root(Path(args[0] if args else "."))
        except PodreleaseError as err:
            sys.stderr.write(f"doit init: {err}\n")
            return REFUSED
        except OSError as err:
            sys.stderr.write(f"doit init: {err.filename or ''}: {err.strerror or err}\n")
            return REFUSED
        for relative in made.written:
            sys.stdout.write(f"wrote {relative}\n")
        where = "" if not args else f"cd {args[0]} && "
        sys.stdout.write(f"release root ready: {where}doit\n")
        return 0
