"""Whose pods this host installs: `pod.json.sig` checked against an allowed_signers file.

With `--allowed-signers FILE` (or `OPS_ONBOARD_ALLOWED_SIGNERS`), `deploy`
reads the signature beside pod.json (`pod.json.sig`, at most
`signing.MAX_SIGNATURE` bytes, from the same bundle directory, tarball or
URL) and has OpenSSH's `ssh-keygen -Y` check it over pod.json's exact bytes
in the namespace `podrelease-<channel>` (core.signing). An unsigned pod, a
pod.json changed after signing, and a key not allowed for the pod's channel
(allowed_signers' `namespaces=`) are each refused with one line, before
anything under DIR is written. The signature is installed beside pod.json,
so `verify --allowed-signers` can check it again later.

Why checking pod.json alone is enough: pod.json pins every other byte a host
installs (image ids and `aci` sha512 and size, OCI digests, volume and pod
files by sha512 and size), and deploy checks each against its pin before it
becomes visible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..core import signing
from ..core.errors import ContractError, FetchError, SignatureError
from ..core.podjson import PodJson
from .sources import Source

ALLOWED_SIGNERS_ENV = "OPS_ONBOARD_ALLOWED_SIGNERS"


def allowed_signers(option: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The allowed_signers file the option names, else the environment's; None: signatures are not required."""
    if option is not None and not option:
        raise ContractError("--allowed-signers names no file (an empty value would turn signature checks off)")
    value = option if option is not None else (os.environ if environ is None else environ).get(ALLOWED_SIGNERS_ENV, "")
    if not value:
        return None
    path = Path(os.path.abspath(value))
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ContractError(f"allowed signers file {path}: missing or unreadable")
    return path


def check_signed(source: Source, pod: PodJson, signers: Path) -> bytes:
    """`pod`'s signature, made by a key `signers` allows for its channel; SignatureError (one line) if none is."""
    where = source.describe("pod.json")
    try:
        signature = source.read_small(signing.SIGNATURE_NAME, signing.MAX_SIGNATURE)
    except FetchError as err:
        # missing, unreachable or oversized: all the same to a host that requires a signature
        raise SignatureError(f"{where}: not signed: {err}; {signers} requires pods signed for "
                             f"channel {pod.channel}") from None
    try:
        signing.verify(pod.raw, signature, signers, pod.channel)
    except SignatureError as err:
        raise SignatureError(f"{where}: {err}") from None
    return signature
