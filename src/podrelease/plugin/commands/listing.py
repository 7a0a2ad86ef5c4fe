"""`doit list`: one line per release; `doit list --all`: every task, as doit lists them.

Plain `doit list` plans the root (a mistake is refused as `doit` refuses
it), then reads the overview (`model.overview.survey`: a stat per pod
directory, a readlink per tip); it creates no task:

    R release:staging/web/frontend/1.3.0
    U release:prod/web/frontend/1.1.0    tip
    U release:prod/web/frontend/1.3.0    yanked: 500s on /checkout

`R` is pending (`doit` would release it), `U` released (or yanked before
it was released: nothing to do). At most three more lines follow: the
tips `doit` would move, a count, a hint. With TASK... arguments only the
matching releases are listed (a channel, a `<channel>/<label_path>/<pod>`
prefix, a pod label or a `release:` task name).

`doit list --all` (or any of doit's own list options: --deps, --private,
--template) is doit's list with each task's status; a `tip:` line says
where the tip points, and where `doit` would move it.

Output into a closed pipe (`doit list | head`) ends quietly with exit 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from doit.cmd_list import List as DoitList

from ...core.errors import PodreleaseError, UserError
from ...model import overview
from ...model.cache import InstructionCache
from ...model.layout import ReleaseRoot
from ..root import release_root, root_problem, seek_release_root
from ..session import loading_done, open_remote, read_root
from .base import REFUSED, USAGE_ERROR
from .doit_commands import reader_gone

TASK_PREFIX = overview.TASK_PREFIX


def checked_overview(root: ReleaseRoot) -> list[overview.PodStatus]:
    """The overview of a root that plans: a mistake doit would refuse is refused here too.

    The root is read as doit reads it (`session.read_root`): through the
    plan cache, so a large root whose files are unchanged is not read again.
    """
    read = read_root(root)
    remote = open_remote(root)
    if remote is not None:  # releases in the root's registry count as released: ask about every pod at once
        remote.prefetch(pods=[remote.pod_of(name) for name, _, _ in read.index.releases])
    pods = overview.survey(root, scan=read.scan, known=overview.known_from_index(root, read.index.releases),
                           elsewhere=remote.pod_versions if remote is not None else None)
    read.save()
    loading_done()
    return pods


def release_lines(pods: list[overview.PodStatus], names_only: bool) -> list[str]:
    rows = []
    for pod in pods:
        for version in pod.versions:
            if version.instruction is None:
                continue  # a pod directory whose instruction was deleted: no release (doit verify says so)
            name = f"{TASK_PREFIX}{pod.name}/{version.version}"
            if version.yanked:
                note = f"yanked: {version.reason or 'no reason given'}"
                if not version.released:
                    note += " (never released)"
            elif version.version == pod.tip and not pod.tip_moves:
                note = "tip"
            else:
                note = ""
            rows.append(("R" if version.pending else "U", name, note))
    if names_only:
        return [name for _, name, _ in rows]
    width = max((len(name) for _, name, _ in rows), default=0) + 3
    return [f"{status} {name:<{width}}{note}".rstrip() for status, name, note in rows]


def summary_lines(pods: list[overview.PodStatus]) -> list[str]:
    """At most three lines: the tips doit would move, the counts, the hint."""
    lines = []
    moves = [pod for pod in pods if pod.tip_moves]
    if moves:
        shown = ", ".join(f"{p.name}: {p.tip or '(none)'} -> {p.tip_target or '(none)'}" for p in moves[:3])
        more = f" and {len(moves) - 3} more" if len(moves) > 3 else ""
        lines.append(f"tips to move: {shown}{more}")
    pending = sum(len(p.pending) for p in pods)
    released = sum(len(p.released) for p in pods)
    yanked = sum(len(p.yanked) for p in pods)
    lines.append(f"{pending} pending, {released} released, {yanked} yanked")
    hint = "`doit` releases what is pending; " if pending or moves else ""
    lines.append(f"{hint}`doit status`: each pod per channel; `doit list --all`: every task")
    return lines


class List(DoitList):
    doc_purpose = "list releases: R pending, U released, yanked ones with their reason (--all: every task)"
    doc_usage = "[--all] [TASK ...]"
    doc_description = """\
Plain `doit list` prints one line per release instruction: `R` pending
(`doit` would release it), `U` released (or yanked: nothing to do), yanked
ones with their reason, the version each tip points at marked `tip`; then
the tips `doit` would move, the counts and a hint. TASK arguments select:
a channel, a <channel>/<label_path>/<pod> prefix, a pod label or a
release:... task name. With --all (or --deps, --private, --template) doit
lists every task with its status; `tip:` lines say where each tip points.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir),
searched upwards from the current folder."""

    def execute(self, params, args):
        seek_release_root(params)
        try:
            if params.get("subtasks") or params.get("private") or params.get("list_deps") or params.get("template"):
                params["status"] = True
                return super().execute(params, args)
            return self.list_releases(params, args)
        except BrokenPipeError:
            return reader_gone()

    def list_releases(self, params, args) -> int:
        root = release_root(params)
        problem = root_problem(root)
        if problem:
            sys.stderr.write(f"doit list: {problem}\n")
            return USAGE_ERROR
        try:
            pods = checked_overview(root)
            chosen = overview.select(pods, list(args), "doit list")
        except LookupError as err:
            sys.stderr.write(f"doit list: {err.args[0]}\n")
            return USAGE_ERROR
        except UserError as err:
            sys.stderr.write(f"{err}\n")
            return REFUSED
        except PodreleaseError as err:
            sys.stderr.write(f"doit list: {err}\n")
            return REFUSED
        quiet = bool(params.get("quiet"))
        lines = release_lines(chosen, quiet)
        if not quiet:
            lines += summary_lines(chosen)
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        return 0

    def _execute(self, subtasks=False, quiet=True, status=False, private=False,
                 list_deps=False, template=None, sort="name", pos_args=None):
        # the loader has planned the root already: only where each tip points and should point is needed
        root = ReleaseRoot.from_environment(self.loader_root())
        self.tips = {pod.name: pod for pod in overview.survey(root, InstructionCache(root).load)}
        return super()._execute(subtasks, quiet, status, private, list_deps, template, sort, pos_args)

    def loader_root(self):
        root = getattr(self.loader, "root", None)
        if root is not None:
            return root.path
        return Path.cwd()  # doit runs a dodo file in its folder

    def _print_task(self, template, task, status, list_deps, tasks):
        if task.name.startswith("tip:") and task.name[4:] in self.tips:
            pod = self.tips[task.name[4:]]
            task.doc = f"-> {pod.tip or '(none)'}" + (f" (doit moves it to {pod.tip_target or '(none)'})" if pod.tip_moves else "")
        super()._print_task(template, task, status, list_deps, tasks)
