#!/usr/bin/env bash
# Postfix alone versus Postfix with `smtpd_milters = inet:127.0.0.1:PORT` →
# `mta milter`, under the load of ../shared/bench/anchors.sh: smtp-source,
# one connection per message, 2 KB messages, MAIL FROM a@example.org, RCPT
# TO bob@yourdomain.com, from 127.0.0.1. Both Postfix instances are private
# (test/helpers/postfix.ts: own config and queue directories, loopback ports,
# `discard:` delivery) and configured alike, with the anchors' policy
# (relaying for 192.168.1.0/24 only, else only to yourdomain.com; sender
# spamford@cyberpromo.com refused); the milter runs bench/policy.vsl, the
# same policy in vSL. The system Postfix is not touched.
#
# Each line: messages/s and CPU ms per message over all processes (Postfix's
# master and every child, plus `mta milter`), medians of ROUNDS interleaved
# rounds (alone, milter, alone, milter, …), and the messages Postfix
# delivered (status=sent in its log) against those sent.
#
# usage (as root, after `npm run build`): bench/milter.sh [MSGS] [SESSIONS...]
#   defaults: 10000 messages, sessions 20 100 300 (as anchors.sh); ROUNDS=3
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
MSGS=${1:-10000}; shift || true
SESSIONS=${*:-"20 100 300"}
ROUNDS=${ROUNDS:-3}
command -v smtp-source >/dev/null || { echo "milter.sh: smtp-source (Debian postfix) is needed" >&2; exit 2; }
[ -f "$root/dist/test/helpers/postfix.js" ] || { echo "milter.sh: run 'npm run build' first" >&2; exit 2; }
work=$(mktemp -d /tmp/vsl-milter-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# start_postfix NAME MAIN_JSON: a private Postfix kept up until killed; writes "port master-pid maillog" to $work/NAME.info
start_postfix() {
  node --input-type=module -e '
    const [root, info, main] = process.argv.slice(1);
    const { startPostfix } = await import(`${root}/dist/test/helpers/postfix.js`);
    const pf = await startPostfix({ main: JSON.parse(main) });
    (await import("node:fs")).writeFileSync(info, `${pf.port} ${pf.masterPid()} ${pf.dir}/maillog\n`);
    process.on("SIGTERM", () => pf.stop().then(() => process.exit(0)));
    setInterval(() => undefined, 1 << 30);
  ' "$root" "$work/$1.info" "$2" >"$work/$1.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do [ -s "$work/$1.info" ] && return 0; sleep 0.1; done
  echo "milter.sh: Postfix '$1' did not start:" >&2; cat "$work/$1.out" >&2; exit 1
}

# cpu_ms PID... : CPU time (ms) used so far by these processes, their live
# descendants and the children they reaped (utime+stime+cutime+cstime).
cpu_ms() {
  local todo="$*" seen="" p kids
  while [ -n "$todo" ]; do
    set -- $todo; p=$1; shift; todo="$*"
    seen="$seen $p"
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null)
    [ -n "$kids" ] && todo="$todo $kids"
  done
  for p in $seen; do cat /proc/"$p"/stat 2>/dev/null; done | sed 's/.*) //' \
    | awk -v hz="$(getconf CLK_TCK)" '{t += $12 + $13 + $14 + $15} END {printf "%d\n", t * 1000 / hz}'
}

delivered() { local n; n=$(grep -c 'status=sent' "$1" 2>/dev/null); echo "${n:-0}"; }

milter_port=$(free_port)
node "$root/bin/mta.js" milter --config "$root/bench/policy.vsl" --listen "127.0.0.1:$milter_port" --log-level warn >"$work/milter.log" 2>&1 &
milter_pid=$!; pids+=($milter_pid)

policy='"relay_domains":"yourdomain.com","mynetworks":"192.168.1.0/24","myhostname":"mx.test.local","smtpd_helo_required":"yes",
  "smtpd_recipient_restrictions":"permit_mynetworks, reject_unauth_destination, check_sender_access inline:{spamford@cyberpromo.com=REJECT}"'
start_postfix alone "{$policy}"
start_postfix milter "{$policy,\"smtpd_milters\":\"inet:127.0.0.1:$milter_port\",\"milter_protocol\":\"6\",\"milter_default_action\":\"tempfail\"}"
read -r alone_port alone_pid alone_log <"$work/alone.info"
read -r milter_pf_port milter_pf_pid milter_pf_log <"$work/milter.info"
sleep 2

# once PORT LOG SESSIONS PID... : prints "msg/s delivered rc cpu_ms_per_msg"
once() {
  local port=$1 log=$2 s=$3; shift 3
  local before after t0 t1 rc c0 c1
  before=$(delivered "$log"); c0=$(cpu_ms "$@"); t0=$(date +%s.%N)
  smtp-source -s "$s" -m "$MSGS" -l 2000 -f a@example.org -t bob@yourdomain.com "127.0.0.1:$port" >"$work/src.out" 2>&1; rc=$?
  t1=$(date +%s.%N)
  sleep 3  # let the queue manager finish the last deliveries
  c1=$(cpu_ms "$@"); after=$(delivered "$log")
  awk -v n="$MSGS" -v a="$t0" -v b="$t1" -v rc="$rc" -v got=$((after - before)) -v c=$((c1 - c0)) \
    'BEGIN { printf "%.0f %d %d %.3f\n", n / (b - a), got, rc, c / n }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "# Postfix $(postconf -h mail_version) alone vs with mta milter; $MSGS messages per run, $ROUNDS rounds"
for s in $SESSIONS; do
  declare -A rate=() cpu=() got=() bad=()
  for r in $(seq 1 "$ROUNDS"); do
    for t in alone milter; do
      if [ $t = alone ]; then out=$(once "$alone_port" "$alone_log" "$s" "$alone_pid")
      else out=$(once "$milter_pf_port" "$milter_pf_log" "$s" "$milter_pf_pid" "$milter_pid"); fi
      echo "# round $r $t sessions=$s: $out"
      read -r m g rc c <<<"$out"
      rate[$t]="${rate[$t]:-} $m"; cpu[$t]="${cpu[$t]:-} $c"; got[$t]=$(( ${got[$t]:-0} + g ))
      [ "$rc" = 0 ] || bad[$t]=1
    done
  done
  for t in alone milter; do
    printf "%-14s sessions=%-4d sent=%d delivered=%d rc=%d  %s msg/s  cpu=%s ms/msg\n" "postfix-$t" "$s" $((MSGS * ROUNDS)) \
      "${got[$t]}" "${bad[$t]:-0}" "$(echo "${rate[$t]}" | median)" "$(echo "${cpu[$t]}" | median)"
  done
  unset rate cpu got bad
done
