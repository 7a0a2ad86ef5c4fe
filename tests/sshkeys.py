"""Real SSH keys, allowed_signers files and a private ssh-agent, made by OpenSSH in tmp_path.

    key = make_key(tmp_path / "keys", "alice")          # private key; key.pub beside it
    allowed_signers(tmp_path / "allowed", ("alice@example.com", key, 'namespaces="podrelease-prod"'))
    with ssh_agent(tmp_path) as sock:                    # SSH_AUTH_SOCK for the processes you start
        ssh_add(key, sock)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None
HAVE_SSH_AGENT = shutil.which("ssh-agent") is not None and shutil.which("ssh-add") is not None


def make_key(directory: Path, name: str, passphrase: str = "") -> Path:
    """A fresh ed25519 key pair; returns the private key's path (the public one is beside it, `.pub`)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return key


def public(key: Path) -> Path:
    return key.parent / (key.name + ".pub")


def allowed_signers(path: Path, *entries: tuple[str, Path, str]) -> Path:
    """Write an allowed_signers file of (principals, private key, options) lines."""
    lines = []
    for principals, key, options in entries:
        keytype, blob = public(key).read_text().split()[:2]
        lines.append(" ".join(part for part in (principals, options, keytype, blob) if part))
    path.write_text("\n".join(lines) + "\n")
    return path


def plain_verify(data: bytes, signature: Path, signers: Path, principal: str, channel: str) -> subprocess.CompletedProcess:
    """What any operator can run by hand: `ssh-keygen -Y verify` with the pod's namespace."""
    return subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", principal, "-n", f"podrelease-{channel}",
         "-s", str(signature)],
        input=data, capture_output=True,
    )


@contextmanager
def ssh_agent(tmp_path: Path) -> Iterator[Path]:
    """A private ssh-agent on a socket of its own; yields the socket, kills the agent afterwards."""
    sock_dir = tmp_path
    if len(str(tmp_path / "agent.sock")) > 100:  # unix socket paths are limited to ~108 bytes
        sock_dir = Path(tempfile.mkdtemp(prefix="podrelease-agent-"))
    sock = sock_dir / "agent.sock"
    proc = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None, "ssh-agent exited"
            assert time.monotonic() < deadline, "ssh-agent did not create its socket"
            time.sleep(0.01)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if sock_dir != tmp_path:
            shutil.rmtree(sock_dir, ignore_errors=True)


def ssh_add(key: Path, sock: Path) -> None:
    subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
