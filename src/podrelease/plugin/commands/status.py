"""`doit status [FILTER]... [--json]`: per channel and pod, where tip points and what waits to be promoted.

Read from the overview of a root that plans (`listing.checked_overview`):
no task is created. For each pod of each channel it shows the version tip points at
(and where `doit` would move it), the released, pending and yanked
versions, and the newest released version of the same pod in every other
channel that has it, marked `newer` when it is newer than anything
released here: that is what is waiting to be promoted.
"""

from __future__ import annotations

import json
import sys

from ...core.names import version_key
from ...model import overview
from ...model.overview import PodStatus
from ..root import ROOT_OPTIONS
from .base import RootCommand, Usage
from .listing import checked_overview

opt_json = {
    "name": "json",
    "short": "",
    "long": "json",
    "type": bool,
    "default": False,
    "help": "print one JSON document {\"pods\": [...]} instead of lines",
}


def other_channels(pod: PodStatus, same_pod: list[PodStatus]) -> list[dict]:
    """The newest released version of this pod in each other channel, and whether it is newer than ours."""
    ours = pod.newest()
    here = {version_key(v.version) for v in pod.versions}  # released, pending or yanked here: nothing to promote
    others = []
    for other in same_pod:
        if other.channel == pod.channel:
            continue
        newest = other.newest()
        newer = newest is not None and version_key(newest) not in here and (ours is None or version_key(newest) > version_key(ours))
        others.append({"channel": other.channel, "newest": newest, "newer": newer})
    return others


def pod_document(pod: PodStatus, same_pod: list[PodStatus]) -> dict:
    return {
        "name": pod.name,
        "channel": pod.channel,
        "pod": str(pod.pod),
        "tip": pod.tip,
        "tip_target": pod.tip_target,
        "released": pod.released,
        "pending": pod.pending,
        "yanked": [{"version": v.version, "reason": v.reason, "released": v.released} for v in pod.yanked],
        "without_instruction": [v.version for v in pod.versions if v.instruction is None],
        "other_channels": other_channels(pod, same_pod),
    }


def pod_lines(document: dict) -> list[str]:
    tip = document["tip"] or "(none)"
    if document["tip"] != document["tip_target"]:
        tip += f" (doit moves it to {document['tip_target'] or '(none)'})"
    lines = [document["name"], f"  tip       {tip}"]
    for key in ("released", "pending"):
        if document[key]:
            lines.append(f"  {key:<9} {' '.join(document[key])}")
    for yanked in document["yanked"]:
        never = "" if yanked["released"] else ", never released"
        lines.append(f"  yanked    {yanked['version']} ({yanked['reason'] or 'no reason given'}{never})")
    if document["without_instruction"]:
        lines.append(f"  no instruction: {' '.join(document['without_instruction'])} (see `doit verify`)")
    for other in document["other_channels"]:
        newest = other["newest"] or "nothing released"
        promote = f" newer: doit promote {other['channel']}/{document['name'].split('/', 1)[1]}/{other['newest']} {document['channel']}"
        lines.append(f"  {other['channel'] + ':':<9} {newest}{promote if other['newer'] else ''}")
    return lines


class Status(RootCommand):
    name = "status"
    doc_purpose = "show each pod per channel: where tip points, released, pending and yanked versions, what waits to be promoted"
    doc_usage = "[FILTER]... [--json]"
    doc_description = """\
For each pod of each channel: the version tip points at (and where `doit`
would move it), the released, pending and yanked versions (with the reason),
versions whose instruction was deleted, and the newest released version of
the same pod in each other channel, marked `newer` with the promote command
when it is newer than anything released here.
FILTER selects: a channel (`prod`), a <channel>/<label_path>/<pod> prefix
(`prod/web`), or a pod label (`//web:frontend`, in every channel); a filter
that selects nothing is refused with the closest ones.
Reads only; builds nothing.
The release root is $RELEASE_ROOT, else the dodo file's folder (or --dir),
searched upwards from the current folder."""
    cmd_options = (opt_json, *ROOT_OPTIONS)
    nargs = None

    def run(self, root, params, args):
        pods = checked_overview(root)
        try:
            chosen = overview.select(pods, list(args), "doit status")
        except LookupError as err:
            raise Usage(err.args[0]) from None
        same = overview.by_pod(pods)
        documents = [pod_document(pod, same[pod.pod]) for pod in chosen]
        if params.get("json"):
            sys.stdout.write(json.dumps({"pods": documents}, indent=2) + "\n")
        else:
            sys.stdout.write("".join(line + "\n" for document in documents for line in pod_lines(document)))
        sys.stdout.flush()
        return 0
