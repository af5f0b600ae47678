#!/usr/bin/env bash
# pgvector for the system's PostgreSQL (the newest /usr/lib/postgresql/<major>, as
# test/helpers/postgres-server.ts runs it), for test/gallery/pgvector.test.ts and bench/pgvector.ts.
#
# Debian bookworm packages no pgvector (postgresql-15-pgvector does not exist; trixie has only
# postgresql-17-pgvector, for a server bookworm does not have). So this builds Debian's own source
# package `pgvector` (from trixie's deb-src, fetched and checked against the signed index by apt)
# against the server headers of the installed minor version (postgresql-server-dev-<major>,
# unpacked privately: installing it would pull clang and LLVM and upgrade the running server).
# The build is Debian's: OPTFLAGS empty, as its `no-native` patch sets, so it runs on any x86-64.
# Apt's state for these two downloads lives in a temporary folder; the system's sources are read,
# never changed. Installs vector.so and the extension's SQL into the server's own directories,
# where `CREATE EXTENSION vector` finds them. Does nothing when they are already there.
set -euo pipefail

PG_ROOT=/usr/lib/postgresql
# The Debian release whose source package is built (the newest stable carrying pgvector).
SOURCE_SUITE=trixie
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

major=$(ls "$PG_ROOT" 2>/dev/null | sort -n | while read -r v; do [ -x "$PG_ROOT/$v/bin/initdb" ] && echo "$v"; done | tail -n 1)
[ -n "$major" ] || { echo "pgvector: no PostgreSQL server in $PG_ROOT (apt-get install postgresql first)" >&2; exit 1; }
pg_config="$PG_ROOT/$major/bin/pg_config"
if [ -f "$("$pg_config" --sharedir)/extension/vector.control" ] && [ -f "$("$pg_config" --pkglibdir)/vector.so" ]; then
  echo "pgvector: already installed for PostgreSQL $major"
  exit 0
fi

work=$(mktemp -d /tmp/face-recog-pgvector.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src" "$work/debs" "$work/headers"
echo "deb-src [signed-by=$KEYRING] http://deb.debian.org/debian $SOURCE_SUITE main" >"$work/sources.list"
# The system's sources (for the server headers) plus trixie's sources, with lists kept in $work.
apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
apt-get "${apt_private[@]}" update -q >/dev/null
# apt's sandbox user cannot write into the root-owned folder: download as root, as apt then does anyway.
(cd "$work/src" && apt-get "${apt_private[@]}" -o APT::Sandbox::User=root source --download-only -q pgvector)

# Headers of the installed minor version when the archive still has it, else of the newest (same ABI).
server_version=$(dpkg-query -W -f='${Version}' "postgresql-$major")
(cd "$work/debs" && { apt-get "${apt_private[@]}" -o APT::Sandbox::User=root download -q "postgresql-server-dev-$major=$server_version" ||
  apt-get "${apt_private[@]}" -o APT::Sandbox::User=root download -q "postgresql-server-dev-$major"; })
dpkg-deb -x "$work"/debs/postgresql-server-dev-*.deb "$work/headers"

tar -xzf "$work"/src/pgvector_*.orig.tar.gz -C "$work/src"
cd "$work"/src/pgvector-*/
build=(PG_CONFIG="$pg_config" OPTFLAGS= with_llvm=no includedir_server="$work/headers/usr/include/postgresql/$major/server")
make -s -j"$(nproc)" "${build[@]}" >/dev/null
make -s "${build[@]}" install >/dev/null
echo "pgvector: $(sed -n "s/^default_version = '\(.*\)'/\1/p" vector.control) (Debian source $(basename "$work"/src/pgvector_*.dsc .dsc)) installed for PostgreSQL $major"
