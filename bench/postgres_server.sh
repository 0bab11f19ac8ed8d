#!/usr/bin/env bash
# A throwaway PostgreSQL server for bench/search.py --store, set up as a server holding a million
# faces should be: shared_buffers that hold the faces table and its HNSW index, and huge pages for
# them where the kernel can give them (searching the graph is bound by memory latency: 2 MB pages
# spare the TLB misses of 4 kB ones, about a fifth of the search time at a million faces).
#
#   bench/postgres_server.sh start [DIR] [PORT]   # prints the URL to give --store
#   bench/postgres_server.sh stop  [DIR]
#
# Needs PostgreSQL and pgvector (scripts/install_postgres.sh); run as root or as the postgres user.
# Durability is off (fsync, full_page_writes): for benchmarks only.
set -euo pipefail
action=${1:-start}
dir=${2:-/tmp/regard-bench-pg}
port=${3:-55499}
shared_buffers=${REGARD_BENCH_SHARED_BUFFERS:-3GB}
bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")
as_postgres=()
[ "$(id -u)" = 0 ] && as_postgres=(runuser -u postgres --)

if [ "$action" = stop ]; then
  "${as_postgres[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
  rm -rf "$dir"
  exit 0
fi

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
[ -d "$dir/data" ] || "${as_postgres[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
huge=off
if [ -w /proc/sys/vm/nr_hugepages ]; then
  # shared_buffers in 2 MB pages, plus a tenth for PostgreSQL's other shared memory.
  case $shared_buffers in *GB) mb=$((${shared_buffers%GB} * 1024)) ;; *MB) mb=${shared_buffers%MB} ;; *) mb=4096 ;; esac
  want=$((mb / 2 + mb / 20 + 64))
  have=$(cat /proc/sys/vm/nr_hugepages)
  [ "$have" -ge "$want" ] || echo "$want" > /proc/sys/vm/nr_hugepages || true
  [ "$(cat /proc/sys/vm/nr_hugepages)" -ge "$want" ] && huge=on
fi
options="-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_wal_size=8GB -c shared_buffers=$shared_buffers -c huge_pages=$huge \
-c jit=off -c maintenance_work_mem=2GB"
"${as_postgres[@]}" "$bindir/pg_ctl" -D "$dir/data" -o "$options" -l "$dir/log" -w start >/dev/null
"$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE bench" 2>/dev/null || true
"$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d bench -qc "CREATE EXTENSION IF NOT EXISTS vector"
echo "huge pages: $huge, shared_buffers $shared_buffers" >&2
echo "postgresql://postgres@127.0.0.1:$port/bench"
