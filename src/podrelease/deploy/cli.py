"""`ops-onboard`: install, switch and check pods on the machine it runs on.

    ops-onboard [--root DIR] [--lock-timeout S] [--stop-timeout S] [--allowed-signers FILE] deploy SOURCE [--no-start]
                [--timeout S] [--deadline S] [--attempts N] [--retry-delay S] [--[no-]progress]
    ops-onboard [--root DIR] list [--json]
    ops-onboard [--root DIR] status [--json]
    ops-onboard [--root DIR] start LABEL
    ops-onboard [--root DIR] stop LABEL
    ops-onboard [--root DIR] activate LABEL VERSION
    ops-onboard [--root DIR] rollback LABEL
    ops-onboard [--root DIR] render LABEL [VERSION]
    ops-onboard [--root DIR] undeploy LABEL VERSION [--force]
    ops-onboard [--root DIR] verify

`deploy` installs, runs the new version under podman (`$PODRELEASE_PODMAN`,
default `podman`) and makes it current once healthy; if it does not become
healthy, the previous version runs again and the command fails. `rollback`
runs the version it goes back to if the pod was running. `undeploy` of the
running version needs `--force` (it is stopped first).

Results go to stdout; every error is one line `ops-onboard: <what is wrong>`
on stderr with a non-zero exit status (1: failed, 2: bad usage), never a
traceback; a version that did not run healthy is followed by the last lines
of the failing container's log. Set OPS_ONBOARD_DEBUG=1 to see the traceback
of an internal error.

With `--allowed-signers FILE` (or OPS_ONBOARD_ALLOWED_SIGNERS=FILE; git's
allowed_signers format), `deploy` installs only pods whose `pod.json.sig`
verifies (`ssh-keygen -Y verify`, namespace `podrelease-<channel>`) with a
key FILE allows for the pod's channel; anything else is refused before DIR
is touched.

OPS_ONBOARD_NO_START=1 is for hosts that run no pods (no podman): `deploy`
installs only, as with `--no-start`; `rollback` only switches `current`; and
`undeploy` does not ask podman whether the version runs. The test suite sets
it for the tests that predate running (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..core.errors import ContractError, printable
from ..core.names import Label
from .run import RunError
from .store import Store
from .trust import ALLOWED_SIGNERS_ENV, allowed_signers

PROG = "ops-onboard"
DEFAULT_ROOT = "/var/lib/ops"
NO_START = "OPS_ONBOARD_NO_START"


def _no_start() -> bool:
    return os.environ.get(NO_START, "") not in ("", "0")


def _err(message: str) -> None:
    """One line on stderr; control characters in it (from a hostile name) are escaped."""
    print(f"{PROG}: {printable(message)}", file=sys.stderr, flush=True)


def _out(text: str) -> None:
    """A result on stdout, escaped like an error: it names what pod.json and DIR hold."""
    print(printable(text), flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        _err(f"{message} (see '{PROG} --help')")
        raise SystemExit(2)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _timeout(text: str) -> float:
    value = _positive(text)
    if value == 0:
        raise argparse.ArgumentTypeError("a timeout must be more than 0 seconds")
    return value


def _attempts(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the sub-command.
    common = _Parser(add_help=False)  # a _Parser like the sub-parsers it is a parent of
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help=f"where pods are installed (default {DEFAULT_ROOT})")
    common.add_argument("--lock-timeout", metavar="SECONDS", type=_positive, default=argparse.SUPPRESS,
                        help="how long to wait for another ops-onboard on the same DIR (default 300)")
    common.add_argument("--stop-timeout", metavar="SECONDS", type=_positive, default=argparse.SUPPRESS,
                        help="how long a stopped pod gets after SIGTERM before SIGKILL (default 10)")
    common.add_argument("--allowed-signers", metavar="FILE", default=argparse.SUPPRESS,
                        help="deploy only pods signed by a key this allowed_signers file allows for "
                             f"their channel (default ${ALLOWED_SIGNERS_ENV}; unset: signatures are not checked)")

    parser = _Parser(prog=PROG, description="Install and manage released pods on this machine.",
                     parents=[common])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    deploy = commands.add_parser("deploy", parents=[common], help="verify and install a pod, and make it current",
                                 description="SOURCE: a bundle directory, a .tar/.tar.gz of one, "
                                             "or the http(s) URL of a pod.json")
    deploy.add_argument("source", metavar="SOURCE")
    deploy.add_argument("--attempts", type=_attempts, default=4, help="HTTP tries per file (default 4)")
    deploy.add_argument("--retry-delay", metavar="SECONDS", type=_positive, default=0.2,
                        help="wait before the first HTTP retry, doubled each time (default 0.2)")
    deploy.add_argument("--timeout", metavar="SECONDS", type=_timeout, default=30.0,
                        help="HTTP connect timeout, and the longest silence while reading (default 30)")
    deploy.add_argument("--deadline", metavar="SECONDS", type=_timeout, default=3600.0,
                        help="the most time all of a deploy's HTTP downloads may take together, retries "
                             "included; past it the deploy fails and leaves DIR as it was (default 3600)")
    progress = deploy.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show download progress (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    deploy.add_argument("--no-start", action="store_true", default=None,
                        help=f"install and make current only, run nothing (default when {NO_START}=1)")

    listing = commands.add_parser("list", parents=[common], help="installed versions; * marks the current one")
    listing.add_argument("--json", action="store_true", help="a JSON array, for scripts")

    status = commands.add_parser("status", parents=[common],
                                 help="each installed pod: current version, running or not, healthy or not")
    status.add_argument("--json", action="store_true", help="a JSON array, for scripts")

    start = commands.add_parser("start", parents=[common], help="run the current version of a pod")
    start.add_argument("label", metavar="LABEL")

    stop = commands.add_parser("stop", parents=[common], help="stop and remove a pod's running version")
    stop.add_argument("label", metavar="LABEL")

    render = commands.add_parser("render", parents=[common], help="print a version as a Kubernetes Pod (YAML)")
    render.add_argument("label", metavar="LABEL")
    render.add_argument("version", metavar="VERSION", nargs="?", help="default: the current version")

    activate = commands.add_parser("activate", parents=[common], help="make an installed version current")
    activate.add_argument("label", metavar="LABEL", help="e.g. //web:frontend")
    activate.add_argument("version", metavar="VERSION")

    rollback = commands.add_parser("rollback", parents=[common], help="go back to the version current before")
    rollback.add_argument("label", metavar="LABEL")

    undeploy = commands.add_parser("undeploy", parents=[common],
                                   help="remove an installed version and the images only it used")
    undeploy.add_argument("label", metavar="LABEL")
    undeploy.add_argument("version", metavar="VERSION")
    undeploy.add_argument("--force", action="store_true", help="even if it is the current or running version")

    commands.add_parser("verify", parents=[common], help="re-check everything installed, report each mismatch "
                        "(with --allowed-signers, each version's signature too)")
    return parser


def _label(text: str) -> Label:
    try:
        return Label.parse(text)
    except ValueError as e:
        raise ContractError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    http = None
    if args.command == "deploy" and args.source.startswith(("http://", "https://")):
        from .fetching import HttpOptions  # urllib and ssl load only for URLs

        # One deadline for the whole deploy, however many times it prepares (see Store.deploy).
        http = HttpOptions(attempts=args.attempts, backoff=args.retry_delay, timeout=args.timeout,
                           deadline=args.deadline, started=time.monotonic(), progress=args.progress)
    signers = allowed_signers(getattr(args, "allowed_signers", None)) if args.command in ("deploy", "verify") else None
    store = Store(Path(getattr(args, "root", DEFAULT_ROOT)), lock_timeout=getattr(args, "lock_timeout", 300.0),
                  http=http, say=_err, stop_timeout=getattr(args, "stop_timeout", 10.0), allowed_signers=signers)
    if args.command == "deploy":
        no_start = _no_start() if args.no_start is None else args.no_start
        _out(store.deploy(args.source, start=not no_start))
    elif args.command == "status":
        found = store.status()
        if args.json:
            print(json.dumps(found, indent=2))
        for pod in found if not args.json else []:
            health = "healthy" if pod["healthy"] else "not healthy" + (f" ({pod['reason']})" if pod["reason"] else "")
            running = f"running {pod['version']} as {pod['pod']}" if pod["running"] else f"{pod['state']}"
            _out(f"{pod['label']} current {pod['current']}: {running}, {health}")
    elif args.command == "start":
        _out(store.start(_label(args.label)))
    elif args.command == "stop":
        _out(store.stop(_label(args.label)))
    elif args.command == "render":
        print(store.render(_label(args.label), args.version), end="", flush=True)
    elif args.command == "list":
        installed = store.installed()
        if args.json:
            print(json.dumps([i.to_json() for i in installed], indent=2))
        else:
            for i in installed:
                where = f" ({i.pod.channel}" + (f", revision {i.pod.revision}" if i.pod.revision else "") + ")" if i.pod else ""
                _out(f"{'*' if i.current else ' '} {i.label} {i.version}{where}")
    elif args.command == "activate":
        _out(store.activate(_label(args.label), args.version))
    elif args.command == "rollback":
        _out(store.rollback(_label(args.label), runs=not _no_start()))
    elif args.command == "undeploy":
        _out(store.undeploy(_label(args.label), args.version, force=args.force, runs=not _no_start()))
    elif args.command == "verify":
        problems = store.verify()
        for problem in problems:
            _out(problem)
        if problems:
            _err(f"verify found {len(problems)} problem{'s' if len(problems) != 1 else ''} under {store.root}")
            return 1
        _out(f"everything installed under {store.root} is intact")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except RunError as e:
        _err(str(e))
        for line in e.details:
            print(f"  {printable(line)}", file=sys.stderr)
        return 1
    except ContractError as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # Output piped into something that stopped reading (`| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        _err(f"{where}{e.strerror or e}")
        return 1
    except Exception as e:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("OPS_ONBOARD_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set OPS_ONBOARD_DEBUG=1 for details)")
        return 70


if __name__ == "__main__":
    sys.exit(main())
