"""SSH signatures over `pod.json`: made and checked by OpenSSH's own `ssh-keygen -Y`.

Trust model. A release signs one thing: the exact bytes of a pod directory's
`pod.json`, into `pod.json.sig` beside it, in the namespace
`podrelease-<channel>`. `pod.json` pins every other byte of the pod
(image ids, each image.aci's sha512 and size, OCI digests, each volume file's
and pod file's sha512 and size), so checking the signature, then the pins,
vouches for the whole pod. A host trusts the keys in its `allowed_signers`
file (git's format); `namespaces="podrelease-prod,..."` there limits a key
to some channels, `valid-before`/`valid-after` to a time window. A signature
says who released this `pod.json` for which channel, nothing about freshness:
an old signed pod stays valid until its key leaves `allowed_signers`.

No cryptography happens in Python: `ssh-keygen` signs and verifies, this
module only runs it safely (no terminal, no askpass, a timeout, private
temporaries) and turns its refusals into one-line `SignatureError`s.

OpenSSH behaviour this relies on (checked against 9.2p1):

- `-Y find-principals` ignores `namespaces=` (and `-n`) but honours
  `valid-before`/`valid-after`; so `verify` finds the principal, then lets
  `-Y verify` enforce the namespace.
- `-Y find-principals` reports only the first `allowed_signers` line that
  lists the key: list each key once, with all its channels in one
  `namespaces=`, or a second line for the same key is never consulted.
- `-Y sign -f key.pub` uses the private key `key` beside it if there is one,
  else the ssh-agent at `SSH_AUTH_SOCK`.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import SignatureError
from .names import check_segment
from .podjson import MAX_POD_JSON

KEY_ENV = "PODRELEASE_SIGNING_KEY"  # path to a private key, or to a public key whose private key is in ssh-agent
SIGNATURE_NAME = "pod.json.sig"
NAMESPACE_PREFIX = "podrelease-"
MAX_SIGNATURE = 64 << 10  # bytes; an SSH signature is well under 1 KiB (RSA-16384 stays under 8)
SSH_KEYGEN = "ssh-keygen"
TIMEOUT = 30.0  # seconds for one ssh-keygen run: signing through an agent included
ARMOR = b"-----BEGIN SSH SIGNATURE-----"
FINGERPRINT = re.compile(r" key (SHA256:[A-Za-z0-9+/=]+)")
MAX_DETAIL = 200  # characters of ssh-keygen's own words repeated in a message

# ssh-keygen's chatter around the line that explains a failure
NOISE = (
    "Could not verify signature.",
    "No principal matched.",
    "Enter passphrase",
    "Signing data on standard input",
    "Signing file ",
    "Write signature to ",
)


def namespace(channel: str) -> str:
    """The SSH signature namespace of a channel: `podrelease-<channel>`."""
    try:
        return NAMESPACE_PREFIX + check_segment(channel, "channel")
    except ValueError as err:
        raise SignatureError(str(err)) from None


def signing_key(environ: Mapping[str, str] | None = None) -> Path | None:
    """The key named by `PODRELEASE_SIGNING_KEY`, or None when releases go unsigned."""
    value = (os.environ if environ is None else environ).get(KEY_ENV, "")
    return Path(value) if value else None


def sign(data: bytes, key: str | Path, channel: str, *, timeout: float = TIMEOUT) -> bytes:
    """An armored SSH signature of `data` in the channel's namespace, made by `ssh-keygen -Y sign`.

    `key` is a private key file, or a public key file whose private key is
    in the ssh-agent at `SSH_AUTH_SOCK`. Nothing ever prompts: a key that
    needs a passphrase and is not in the agent is a `SignatureError`. The
    data goes to a file only ssh-keygen needs to read, in a private (0700)
    temporary directory removed afterwards.
    """
    ns = namespace(channel)
    keypath = Path(os.path.abspath(key))  # never an argument ssh-keygen could take for an option
    if not keypath.is_file():
        raise SignatureError(f"signing key {keypath}: no such file")
    with tempfile.TemporaryDirectory(prefix="podrelease-sign-") as tmp:
        target = Path(tmp) / "pod.json"
        _write_private(target, data)
        result = _ssh_keygen(["-Y", "sign", "-f", str(keypath), "-n", ns, str(target)], None, timeout)
        if result.returncode != 0:
            raise SignatureError(_sign_failure(keypath, result.stderr))
        try:
            signature = (Path(tmp) / (target.name + ".sig")).read_bytes()
        except OSError:
            raise SignatureError(f"cannot sign with {keypath}: ssh-keygen wrote no signature") from None
    if not signature.startswith(ARMOR):
        raise SignatureError(f"cannot sign with {keypath}: ssh-keygen wrote something that is not an SSH signature")
    return signature


def verify(
    data: bytes, signature: bytes, allowed_signers: str | Path, channel: str, *, timeout: float = TIMEOUT
) -> str:
    """The principal whose key signed `data` for `channel`, per `allowed_signers`; else `SignatureError`.

    Each refusal names its case: no signature, not a signature, data changed
    after signing, signed for another channel, a key not in `allowed_signers`,
    a key expired (or not yet valid) there, a key allowed only for other
    channels.
    """
    ns = namespace(channel)
    if len(data) > MAX_POD_JSON:
        raise SignatureError(f"signed data larger than {MAX_POD_JSON >> 20} MiB: not a pod.json")
    if len(signature) > MAX_SIGNATURE:
        raise SignatureError(f"signature larger than {MAX_SIGNATURE >> 10} KiB: not an SSH signature")
    if not signature.strip():
        raise SignatureError("unsigned: the signature is empty")
    if not signature.lstrip().startswith(ARMOR):
        raise SignatureError(f"not an SSH signature: it does not start with {ARMOR.decode()}")
    signers = Path(os.path.abspath(allowed_signers))
    if not signers.is_file() or not os.access(signers, os.R_OK):
        raise SignatureError(f"allowed signers file {signers}: missing or unreadable")

    with tempfile.TemporaryDirectory(prefix="podrelease-verify-") as tmp:
        sig = Path(tmp) / SIGNATURE_NAME
        _write_private(sig, signature)

        # 1. The signature itself: well formed, this namespace, these bytes (no key trusted yet).
        checked = _ssh_keygen(["-Y", "check-novalidate", "-n", ns, "-s", str(sig)], data, timeout)
        if checked.returncode != 0:
            raise SignatureError(_check_failure(ns, checked.stderr))
        found = FINGERPRINT.search(checked.stdout + checked.stderr)
        key = f"signing key {found.group(1)}" if found else "the signing key"

        # 2. Who holds that key (find-principals honours valid-before/after, not namespaces).
        principals = _ssh_keygen(["-Y", "find-principals", "-s", str(sig), "-f", str(signers)], None, timeout)
        if principals.returncode != 0:
            raise SignatureError(_principal_failure(key, signers, principals.stderr))
        names = [p for p in principals.stdout.splitlines() if p.strip()]
        if not names:
            raise SignatureError(f"{key} is not in {signers}: signed by an unknown key")

        # 3. The full check, namespaces included, for each principal of that key.
        refusals = []
        for name in names:
            result = _ssh_keygen(
                ["-Y", "verify", "-f", str(signers), "-I", name, "-n", ns, "-s", str(sig)], data, timeout
            )
            if result.returncode == 0:
                return name
            refusals.append(result.stderr)
    who = ", ".join(names)
    if any("not permitted for use in signature namespace" in text for text in refusals):
        raise SignatureError(
            f"{key} ({who}) is not allowed to sign for {ns} in {signers}: its namespaces= names other channels"
        )
    raise SignatureError(f"{key} ({who}) refused by {signers}: {_detail(refusals[-1])}")


def read_signature(path: Path) -> bytes:
    """A `pod.json.sig` from an untrusted place, at most `MAX_SIGNATURE` bytes; a missing one is unsigned."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SIGNATURE + 1)
    except FileNotFoundError:
        raise SignatureError(f"{path}: unsigned, no {SIGNATURE_NAME}") from None
    except OSError as err:
        raise SignatureError(f"{path}: cannot read: {err.strerror}") from None
    if len(data) > MAX_SIGNATURE:
        raise SignatureError(f"{path}: larger than {MAX_SIGNATURE >> 10} KiB, not an SSH signature")
    return data


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _ssh_keygen(args: list[str], data: bytes | None, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ssh-keygen with no way to ask anyone anything: no terminal, no askpass, stdin data or nothing.

    Its stdout and stderr come back as text (ssh-keygen writes ASCII; anything else is replaced).
    """
    env = dict(os.environ)
    env["SSH_ASKPASS_REQUIRE"] = "never"
    try:
        result = subprocess.run(
            [SSH_KEYGEN, *args],
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=env,
            start_new_session=True,  # no controlling terminal: a passphrase prompt cannot open /dev/tty
            timeout=timeout,
        )
    except FileNotFoundError:
        raise SignatureError(f"{SSH_KEYGEN} not found: pod signatures need OpenSSH's ssh-keygen") from None
    except subprocess.TimeoutExpired:
        raise SignatureError(f"{SSH_KEYGEN} {' '.join(args[:2])} took longer than {timeout:g}s, gave up") from None
    return subprocess.CompletedProcess(
        result.args, result.returncode,
        result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace"),
    )


def _detail(stderr: str) -> str:
    """ssh-keygen's explanation of a failure, on one short line."""
    lines = [line.strip() for line in stderr.splitlines()]
    kept = [line for line in lines if line and not line.startswith(NOISE)]
    text = "; ".join(kept) or "failed without saying why"
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def _sign_failure(keypath: Path, stderr: str) -> str:
    if "passphrase" in stderr:
        return f"cannot sign with {keypath}: the key needs a passphrase and is not in ssh-agent (ssh-add it)"
    if "No private key found" in stderr:
        return f"cannot sign with {keypath}: no private key beside it and none in ssh-agent (SSH_AUTH_SOCK)"
    return f"cannot sign with {keypath}: {_detail(stderr)}"


def _check_failure(ns: str, stderr: str) -> str:
    if "namespace does not match" in stderr:
        return f"signature made for another channel: its namespace is not {ns}"
    if "incorrect signature" in stderr:
        return "signature does not match the data: pod.json changed after signing (or the signature is another file's)"
    if "Couldn't parse signature" in stderr or "invalid format" in stderr or "sshsig_" in stderr:
        return f"not an SSH signature: {_detail(stderr)}"
    return f"bad signature: {_detail(stderr)}"


def _principal_failure(key: str, signers: Path, stderr: str) -> str:
    if "key has expired" in stderr:
        return f"{key} has expired (valid-before in allowed signers): {_detail(stderr)}"
    if "not yet valid" in stderr:
        return f"{key} is not yet valid (valid-after in allowed signers): {_detail(stderr)}"
    if "No principal matched" in stderr:
        return f"{key} is not in {signers}: signed by an unknown key"
    return f"{key}: cannot look it up in {signers}: {_detail(stderr)}"


def signed_here(pod_dir: Path) -> bool:
    """Whether a pod directory holds its `pod.json.sig` as a regular file (a link there signs nothing)."""
    try:
        return stat.S_ISREG(os.lstat(pod_dir / SIGNATURE_NAME).st_mode)
    except OSError:
        return False
