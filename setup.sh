#!/usr/bin/env bash
# Installs what podrelease and its tests need on a fresh Debian machine:
# Debian's appc-spec (actool), nginx-light and curl; the container tools the
# runtime and its tests use (podman, skopeo, umoci, runc, catatonit,
# busybox-static); OpenSSH's ssh-keygen (signatures); the CNCF distribution
# registry (docker-registry) and htpasswd (apache2-utils) that the registry
# tests run on 127.0.0.1; then this package with its test and lint extras, at the
# exact versions of constraints.txt.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v actool >/dev/null 2>&1 || missing+=(appc-spec)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
for tool in curl pigz podman skopeo umoci runc catatonit; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,lint]'
