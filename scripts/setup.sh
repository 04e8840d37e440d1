#!/usr/bin/env bash
# Installs everything bento-user needs on a Debian 12 machine, as root, and is safe to
# run again: apt packages only when missing, the virtualenv only when absent, the
# package only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(fuse3 libfuse3-dev pkg-config e2fsprogs fuse2fs git sqlite3 fio util-linux graphviz)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi

stamp=.venv/.bento-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing bento-user into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi

# mount(8) runs /sbin/mount.fuse.bento for "mount -t fuse.bento" and fstab lines
if [ "$(id -u)" = 0 ] && [ "$(readlink /sbin/mount.fuse.bento 2>/dev/null)" != "$PWD/.venv/bin/mount.fuse.bento" ]; then
    ln -sf "$PWD/.venv/bin/mount.fuse.bento" /sbin/mount.fuse.bento
fi
