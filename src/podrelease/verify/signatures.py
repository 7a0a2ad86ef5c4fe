"""`doit verify --allowed-signers FILE`: every pod directory's `pod.json.sig`.

Each pod whose `pod.json` has the spec's shape must carry a signature that
`ssh-keygen -Y verify` accepts over pod.json's bytes in the namespace
`podrelease-<channel>`, from a key FILE allows for that channel
(core.signing): what `ops-onboard --allowed-signers` will demand of it. An
unsigned pod, a pod.json changed after signing and a key not allowed for the
channel are each one error, at the signature's path. Checking runs
`ssh-keygen` a few times per pod, on the verify thread pool with the hashing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ..core import signing
from ..core.errors import SignatureError
from ..model.layout import POD_JSON
from .report import Problems
from .scan import PodDir, Scan


class SignatureCheck:
    """One pod's signature, checked on a worker thread; `why` says what is wrong, if anything."""

    def __init__(self, pod: PodDir, signers: Path):
        self.pod = pod
        self.signers = signers
        self.path = pod.path / signing.SIGNATURE_NAME  # where the problem is: the signature, or pod.json
        self.why: str | None = None

    def compute(self) -> None:
        doc = self.pod.doc
        assert doc is not None  # only pods whose pod.json was read get a check
        if not os.path.lexists(self.path):
            self.path = self.pod.path / POD_JSON
            self.why = f"unsigned: no {signing.SIGNATURE_NAME} beside it"
            return
        try:
            signature = signing.read_signature(self.path)
            signing.verify(doc.raw, signature, self.signers, doc.channel)
        except SignatureError as err:
            self.why = str(err).removeprefix(f"{self.path}: ")


def signature_jobs(scan: Scan, signers: Path | None) -> list[SignatureCheck]:
    """A check per pod whose pod.json was read; none without an allowed_signers file."""
    if signers is None:
        return []
    return [SignatureCheck(pod, signers) for _, pod in scan.pods() if pod.doc is not None]


def jobs(checks: list[SignatureCheck]) -> list[Callable[[], None]]:
    return [partial(SignatureCheck.compute, check) for check in checks]


def report_signatures(problems: Problems, checks: list[SignatureCheck]) -> None:
    for check in checks:
        if check.why is not None:
            problems.report("pod", check.path, check.why)
