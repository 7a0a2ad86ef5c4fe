"""`doit verify`: check the release root; print one line per problem; repair nothing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from doit.cmd_base import Command

from ...core.errors import printable
from ..root import ROOT_OPTIONS, release_root, root_problem
from .base import USAGE_ERROR

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


opt_allowed_signers = {
    "name": "allowed_signers",
    "short": "",
    "long": "allowed-signers",
    "type": str,
    "default": "",
    "help": "an allowed_signers file (git's format): every pod must carry pod.json.sig, "
            "signed by a key it allows for the pod's channel",
}


class Verify(Command):
    name = "verify"
    doc_purpose = "check the release root's images, pods, tips and instructions; repair nothing"
    doc_usage = "[--json] [--strict] [--allowed-signers FILE]"
    doc_description = """\
Checks every image (image.aci decompresses; its sha512 equals the sha512 file,
build.json and every pod.json id naming it), every pod directory (pod.json
parses and matches the spec; every symlink is relative, resolves and stays
inside the release root; the referenced image and volume versions exist;
each image.aci, volume file and pod file has the sha512 and size pod.json
pins; its manifest is what its images, pod rule and channel parameters
give), every tip (points at the highest released
version) and every instruction (loads; agrees with its pod directory).
Reports a pending instruction that cannot be released (a missing volume
version, a missing pod or image rule), and a released version whose
instruction was deleted (a warning; an error when tip points at it).
With --allowed-signers FILE, every pod directory's pod.json.sig must verify
(ssh-keygen -Y verify, namespace podrelease-<channel>) with a key FILE allows
for the pod's channel.
Warns when an image's rule or input files changed since its newest version was
built (drift: the version was not bumped).
With a registry (podrelease.yaml's registry:, or PODRELEASE_REGISTRY), every
image and pod version must be in the registry with the digest it has here
(a warning while it is not pushed yet; an error when the tag holds other
content). PODRELEASE_REGISTRY= verify checks the disk alone.
Prints one `path[:line]: message` line per problem, then a summary.
Exit status: 0 if there is no error (warnings allowed unless --strict), 1
otherwise. Reads only; never writes.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir)."""

    cmd_options = (opt_json, opt_strict, opt_allowed_signers, *ROOT_OPTIONS)

    def execute(self, params, args):
        from ...verify import verify  # imported when used: doit imports every command on every run

        if args:
            sys.stderr.write(f"ERROR: verify takes no arguments (got {' '.join(args)})\n")
            return USAGE_ERROR
        root = release_root(params)
        problem = root_problem(root)
        if problem:
            sys.stderr.write(f"ERROR: {printable(str(problem))}\n")
            return USAGE_ERROR
        signers = None
        if params.get("allowed_signers"):
            signers = Path(os.path.abspath(params["allowed_signers"]))
            if not signers.is_file() or not os.access(signers, os.R_OK):
                sys.stderr.write(f"ERROR: allowed signers file {signers}: missing or unreadable\n")
                return USAGE_ERROR
        report = verify(root, allowed_signers=signers)
        try:
            if params.get("json"):
                sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
            else:
                for problem in report.problems:  # names from the tree: escaped (core.errors.printable)
                    sys.stdout.write(f"{printable(str(problem))}\n")
                sys.stdout.write(report.summary() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `doit verify | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1 if report.failed(strict=bool(params.get("strict"))) else 0
