#!/usr/bin/env bash
# Installs everything bento-user needs on a Debian 12 machine, as root, and is safe to
# run again: apt packages only when missing, the virtualenv only when absent, the
# package only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(fuse3 libfuse3-dev pkg-config patch e2fsprogs fuse2fs acl git sqlite3 fio util-linux graphviz
              redis-server bash-completion man-db meson ninja-build xz-utils)
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

# libfuse as Debian ships it (scripts/libfuse-source.sh: its source package at the
# installed version, Debian's patches applied), with third_party/libfuse's patch on
# top: the mount negotiates FUSE_HANDLE_KILLPRIV_V2, so the kernel stops asking for
# security.capability before every write (its README says why). Built into
# .venv/libfuse, which pyfuse3 below is linked to; the system's libfuse stays as it is.
libfuse_version=$(dpkg-query -W -f='${Version}' libfuse3-3)
libfuse_patch="$PWD/third_party/libfuse/killpriv-v2.patch"
libfuse_stamp=.venv/.libfuse-patched
libfuse_want="$libfuse_version+debian $(sha256sum < "$libfuse_patch" | cut -d' ' -f1)"
if [ ! -f "$libfuse_stamp" ] || [ "$(cat "$libfuse_stamp")" != "$libfuse_want" ] \
        || [ ! -e .venv/libfuse/libfuse3.so.3 ]; then
    echo "setup: building libfuse $libfuse_version with third_party/libfuse's patch"
    work=$(mktemp -d)
    src=$(scripts/libfuse-source.sh "$work")
    patch -s -p1 -d "$src" < "$libfuse_patch"
    meson setup -Dexamples=false -Dutils=false -Dtests=false "$src/build" "$src" >/dev/null
    ninja -C "$src/build" >/dev/null
    rm -rf .venv/libfuse
    mkdir -p .venv/libfuse
    cp -P "$src/build/lib/libfuse3.so.3" "$(readlink -f "$src/build/lib/libfuse3.so.3")" \
        .venv/libfuse/
    rm -rf "$work"
    echo "$libfuse_want" > "$libfuse_stamp"
fi

# pyfuse3 with handlers for lseek(SEEK_DATA/SEEK_HOLE) and fallocate, the umask left
# to the file system under POSIX ACLs, range invalidation, polling for the next
# request, and directories the kernel may cache: built from its pinned sdist with
# third_party/pyfuse3's patches, in this order (its README says why), before the
# package, whose dependency it then satisfies.
pyfuse3_version=3.5.0
pyfuse3_patches=("$PWD/third_party/pyfuse3/lseek-fallocate.patch"
                 "$PWD/third_party/pyfuse3/acl-dont-mask.patch"
                 "$PWD/third_party/pyfuse3/invalidate-range.patch"
                 "$PWD/third_party/pyfuse3/poll.patch"
                 "$PWD/third_party/pyfuse3/cache-readdir.patch")
pyfuse3_stamp=.venv/.pyfuse3-patched
pyfuse3_want="$pyfuse3_version $(cat "${pyfuse3_patches[@]}" | sha256sum | cut -d' ' -f1) $libfuse_want"
if [ ! -f "$pyfuse3_stamp" ] || [ "$(cat "$pyfuse3_stamp")" != "$pyfuse3_want" ]; then
    echo "setup: building pyfuse3 $pyfuse3_version with third_party/pyfuse3's patches"
    .venv/bin/python -m pip install -q --upgrade pip
    work=$(mktemp -d)
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: \
        "pyfuse3==$pyfuse3_version" -d "$work"
    tar -xzf "$work/pyfuse3-$pyfuse3_version.tar.gz" -C "$work"
    src="$work/pyfuse3-$pyfuse3_version"
    for p in "${pyfuse3_patches[@]}"; do
        patch -s -p1 -d "$src" < "$p"
    done
    rm -f "$src/src/pyfuse3/__init__.c"  # generated from the .pyx: Cython makes it anew
    # linked against Debian's headers, run with .venv/libfuse's build (same ABI)
    LDFLAGS="-Wl,-rpath,$PWD/.venv/libfuse" \
        SETUPTOOLS_SCM_PRETEND_VERSION="$pyfuse3_version+bento.5" \
        .venv/bin/python -m pip install -q --no-deps --force-reinstall --no-cache-dir "$src"
    rm -rf "$work"
    echo "$pyfuse3_want" > "$pyfuse3_stamp"
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

# bento(1) and bash's completion, both made from the CLI's own parser; rewritten only
# when they changed, so a second run is quiet
if [ "$(id -u)" = 0 ]; then
    install_generated() {  # target, command...
        local target=$1 tmp
        shift
        tmp=$(mktemp)
        "$@" > "$tmp"
        mkdir -p "$(dirname "$target")"
        if ! cmp -s "$tmp" "$target"; then
            install -m 0644 "$tmp" "$target"
            echo "setup: installed $target"
        fi
        rm -f "$tmp"
    }
    install_generated /usr/local/share/man/man1/bento.1 .venv/bin/bento manpage
    install_generated /usr/local/share/bash-completion/completions/bento .venv/bin/bento completion bash
fi
