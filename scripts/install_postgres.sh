#!/usr/bin/env bash
# Install PostgreSQL and pgvector from Debian's packages when absent, for the PostgreSQL tests
# (tests/conftest.py starts a throwaway server itself). Never fails: without apt, root or the
# packages, it says so and the PostgreSQL test cases are skipped (loudly).
set -uo pipefail
have_vector() { compgen -G "/usr/share/postgresql/*/extension/vector.control" >/dev/null; }
say() { echo "install_postgres: $*" >&2; }
have_vector && exit 0
command -v apt-get >/dev/null || { say "no apt-get: PostgreSQL tests will be skipped"; exit 0; }
[ "$(id -u)" = 0 ] || { say "not root: PostgreSQL tests will be skipped"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq postgresql >/dev/null || { say "cannot install postgresql"; exit 0; }
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
apt-get install -y -qq "postgresql-$version-pgvector" >/dev/null 2>&1 && exit 0
# Debian 12 ships no pgvector binary package: build Debian's own source package of it (from the
# next release's sources) against this server, with its development headers.
say "no postgresql-$version-pgvector package: building Debian's pgvector source package"
list=/etc/apt/sources.list.d/regard-pgvector-src.sources
printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$list"
work=$(mktemp -d)
(
  set -e
  apt-get update -qq
  apt-get install -y -qq "postgresql-server-dev-$version" dpkg-dev make gcc >/dev/null
  cd "$work"
  apt-get source --download-only pgvector >/dev/null 2>&1
  tar xzf pgvector_*.orig.tar.gz
  cd pgvector-*/
  make -s PG_CONFIG="/usr/lib/postgresql/$version/bin/pg_config" OPTFLAGS="" >/dev/null
  make -s PG_CONFIG="/usr/lib/postgresql/$version/bin/pg_config" install >/dev/null
) || say "could not build pgvector: PostgreSQL tests will be skipped"
rm -rf "$work" "$list"
exit 0
