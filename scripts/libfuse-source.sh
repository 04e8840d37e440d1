#!/usr/bin/env bash
# Usage: scripts/libfuse-source.sh DEST
# Fetches Debian's fuse3 source package at the installed libfuse's version into DEST,
# unpacks it with Debian's patches applied (the library as Debian built it) and prints
# the tree's path; again, it only prints. Through an apt list of its own, so the
# machine's apt lists stay as they are. Used by setup.sh (our patched libfuse) and
# bench/fuse_compare.py (the C floor).
set -euo pipefail
dest=$1
version=$(dpkg-query -W -f='${Version}' libfuse3-3)
version=${version#*:}  # file names carry no epoch
src="$dest/fuse-${version%-*}"
if [ ! -f "$src/.debian-patched" ]; then
    mkdir -p "$dest/lists/partial"
    printf '%s\n' "Types: deb-src" "URIs: http://deb.debian.org/debian" "Suites: bookworm" \
        "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
        > "$dest/src.sources"
    apt=(apt-get -qq -o "Dir::Etc::SourceList=$dest/src.sources" -o APT::Sandbox::User=root
         -o Dir::Etc::SourceParts=/nonexistent -o "Dir::State::Lists=$dest/lists")
    "${apt[@]}" update >/dev/null
    (cd "$dest" && "${apt[@]}" source --download-only "fuse3=$version" >/dev/null)
    rm -rf "$src"
    tar -xJf "$dest/fuse3_${version%-*}.orig.tar.xz" -C "$dest"
    tar -xJf "$dest/fuse3_$version.debian.tar.xz" -C "$src"
    for p in $(grep -v '^#' "$src/debian/patches/series"); do
        patch -s -p1 -d "$src" < "$src/debian/patches/$p"
    done
    touch "$src/.debian-patched"
fi
echo "$src"
