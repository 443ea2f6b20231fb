#!/usr/bin/env bash
# Runs the side-by-side SMTP benchmark ../shared/bench/anchors.sh (Postfix,
# Haraka, bare smtp-server) with vsl-mta added as the "project" row.
#
# usage (from anywhere, as root, after `npm run build`):
#   bench/anchors-project.sh [MSGS] [SESSIONS...]      e.g. bench/anchors-project.sh 10000 20 100 300
#   bench/anchors-project.sh --count                   messages vsl-mta has spooled so far
#
# vsl-mta runs bench/policy.vsl (the anchors' policy in vSL) on
# 127.0.0.1:2530 with its spool in /tmp/anchors/vsl-queue. It builds nothing:
# bin/mta.js needs dist/ from `npm run build`.
#
# The count is the server's own counter of messages made durable in the
# spool (every 250 to end-of-data), read by sending SIGUSR2 to the primary
# process (its pid is the spool's scheduler.pid), which writes
# <queue>/stats.json. Files in the spool cannot be counted instead: the
# policy discards each message right after it is spooled.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
queue=${ANCHORS_QUEUE:-/tmp/anchors/vsl-queue}

if [ "${1:-}" = "--count" ]; then
  pid=$(cat "$queue/scheduler.pid" 2>/dev/null) || { echo 0; exit 0; }
  rm -f "$queue/stats.json"
  kill -USR2 "$pid" 2>/dev/null || { echo 0; exit 0; }
  # The primary asks its workers and writes the file within about a second.
  for _ in $(seq 1 50); do
    [ -s "$queue/stats.json" ] && break
    sleep 0.1
  done
  node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(`${s.accepted}\n`)' \
    "$queue/stats.json" 2>/dev/null || echo 0
  exit 0
fi

anchors="$root/../shared/bench/anchors.sh"
[ -x "$anchors" ] || [ -f "$anchors" ] || { echo "anchors-project: $anchors not found" >&2; exit 2; }
[ -f "$root/dist/src/cli/main.js" ] || { echo "anchors-project: dist/ is missing; run 'npm run build' first" >&2; exit 2; }

# A fresh spool: no backlog from an earlier run competes with this one.
rm -rf "$queue"
mkdir -p "$queue"

cd "$root"
# `exec`: anchors.sh backgrounds this line and later kills the pid it got,
# which must be the server itself, not a shell around it.
export PROJECT_CMD="exec node bin/mta.js --config bench/policy.vsl --listen 127.0.0.1:2530 --queue-dir $queue --log-level warn"
export PROJECT_PORT=2530
export PROJECT_COUNT="ANCHORS_QUEUE=$queue $here/anchors-project.sh --count"
exec bash "$anchors" "$@"
