#!/bin/sh
# start.sh - a whole verdict fleet on one machine, for a demonstration
# (docs/fleet.md): a PostgreSQL primary with a synchronous standby, three
# verdictd nodes writing to it, and HAProxy in front on 127.0.0.1:7000.
#
#   examples/fleet/start.sh [BUILD]      (from the repository root)
#
# Everything lives in a temporary directory, printed at the start; Ctrl-C
# stops it all.  Needs postgresql-15 and haproxy (scripts/install-deps).
# As root, PostgreSQL runs as the postgres user.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case $build in /*) ;; *) build=$root/$build ;; esac
bin=/usr/lib/postgresql/15/bin
dir=$(mktemp -d -t verdict-fleet.XXXXXX)
chmod 755 "$dir"
echo "fleet: in $dir"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" -ne 0 ] || chown postgres "$dir"

pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  as_pg "$bin/pg_ctl" -D "$dir/standby" -m fast stop >/dev/null 2>&1 || true
  as_pg "$bin/pg_ctl" -D "$dir/primary" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

# the primary, on a socket in $dir and port 5491
as_pg "$bin/initdb" -D "$dir/primary" -U postgres --auth=trust >/dev/null
cp "$here/primary.conf" "$dir/primary/fleet.conf"
echo "include 'fleet.conf'" >>"$dir/primary/postgresql.conf"
echo "local replication postgres trust" >>"$dir/primary/pg_hba.conf"
as_pg "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w \
    -o "-p 5491 -k $dir -c listen_addresses=''" start >/dev/null

# the synchronous standby, on port 5492
as_pg "$bin/pg_basebackup" -h "$dir" -p 5491 -U postgres -D "$dir/standby" -R
# the copy includes the primary's fleet.conf (a standby needs settings at
# least as large); its own come after
cp "$here/standby.conf" "$dir/standby/standby.conf"
echo "include 'standby.conf'" >>"$dir/standby/postgresql.conf"
echo "primary_conninfo = 'host=$dir port=5491 user=postgres application_name=standby1'" \
    >>"$dir/standby/postgresql.auto.conf"
as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w \
    -o "-p 5492 -k $dir -c listen_addresses=''" start >/dev/null
as_pg "$bin/psql" -h "$dir" -p 5491 -U postgres -Atc "CREATE DATABASE verdict"

db="host=$dir port=5491 user=postgres dbname=verdict"
n=1
for node in a b c; do
  "$build/verdictd" --policies "$root/policies" \
      --socket "$dir/$node.sock" --listen "127.0.0.1:710$n" \
      --admin-socket "$dir/$node-admin.sock" \
      --db "$db" --node-id "$node" >"$dir/$node.log" 2>&1 &
  pids="$pids $!"
  n=$((n + 1))
done
haproxy -f "$here/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
pids="$pids $!"

cat <<EOT
fleet: primary $dir:5491 (synchronous standby on 5492), nodes a, b, c
       behind HAProxy on 127.0.0.1:7000.  Try:
  $build/verdict decide compensation --region GD-SZ --connect 127.0.0.1:7000 examples/compensation.json
  $build/verdict fleet status --db "$db"
  $build/verdict history verify --db "host=$dir port=5492 user=postgres dbname=verdict"
  $build/verdict reload --admin-socket $dir/a-admin.sock
Ctrl-C stops everything.
EOT
wait
