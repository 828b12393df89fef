#!/usr/bin/env bash
# End-to-end performance run: Switchboard and the guide's Node server side by
# side, same machine, same load tool, same scenarios. Prints one table and
# writes the raw reports to .bench/. Run by `make bench`.
#
# The Node server is built here, at bench time, from the guide in
# ../shared/seed/ into the ignored folder .bench/node; it is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.bench
mkdir -p "$out"
players=${BENCH_PLAYERS:-2000}
operators=${BENCH_OPERATORS:-10}
duration=${BENCH_DURATION:-20s}
idle=${BENCH_IDLE:-15000}

go build -o "$out/switchboard" ./cmd/switchboard
go build -o "$out/loadtest" ./cmd/loadtest

# --- the guide's Node server ---
guide=$(ls ../shared/seed/*.txt 2>/dev/null | head -1 || true)
if [ -z "${BENCH_ONLY_ROUTING:-}" ] && { [ ! -f "$out/node/dist/server.js" ] || [ "$guide" -nt "$out/node/dist/server.js" ]; }; then
  mkdir -p "$out/node/src"
  # The code block after "### 1. Main Server File" is the server.
  awk '/^### 1\. Main Server File/{f=1;next} f&&/^```typescript/{c=1;next} c&&/^```/{exit} c{print}' "$guide" > "$out/node/src/server.ts"
  cat > "$out/node/package.json" <<'JSON'
{ "name": "guide-server", "private": true, "main": "dist/server.js",
  "dependencies": { "express": "^5", "socket.io": "~4.8", "cors": "^2", "dotenv": "^17" },
  "devDependencies": { "typescript": "~5.9", "@types/express": "^5", "@types/cors": "^2", "@types/node": "^20" } }
JSON
  cat > "$out/node/tsconfig.json" <<'JSON'
{ "compilerOptions": { "target": "ES2020", "module": "commonjs", "lib": ["ES2020"], "outDir": "./dist", "rootDir": "./src",
  "strict": true, "esModuleInterop": true, "skipLibCheck": true, "moduleResolution": "node" }, "include": ["src/**/*"] }
JSON
  (cd "$out/node" && npm install --no-audit --no-fund --loglevel=error >/dev/null && npx tsc)
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start NAME [VAR=VALUE...]: sets PORT_<NAME> and PID_<NAME>; the
# variables are added to Switchboard's environment. Each start keeps its
# own log ($out/NAME.N.log).
starts=0
start() {
  local name=$1 port; shift
  port=$(free_port)
  starts=$((starts + 1))
  if [ "$name" = node ]; then
    (cd "$out/node" && PORT=$port NODE_ENV=production exec node dist/server.js >"../node.$starts.log" 2>&1) &
  else
    # Simulated operators reply far faster than people type: lift the
    # per-socket limits that protect a real deployment.
    env PORT=$port SWITCHBOARD_HOST=127.0.0.1 SWITCHBOARD_LOG_LEVEL=warn \
      SWITCHBOARD_MESSAGE_RATE=10000 SWITCHBOARD_MESSAGE_BURST=100000 \
      SWITCHBOARD_TYPING_RATE=10000 SWITCHBOARD_TYPING_BURST=100000 \
      SWITCHBOARD_MAX_TEXT_CHARS=100000 "$@" \
      "$out/switchboard" >"$out/$name.$starts.log" 2>&1 &
  fi
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "$name did not start:" >&2; tail -5 "$out/$name.$starts.log" >&2; exit 1; }
  eval "PORT_$name=$port PID_$name=$pid"
}

# cpu PID: user+system clock ticks so far
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

# samples PID: "unix-time cpu-ticks write-syscalls" every half second
samples() {
  while :; do
    echo "$(date +%s.%N) $(cpu "$1") $(awk '/^syscw/{print $2}' "/proc/$1/io" 2>/dev/null || echo 0)"
    sleep 0.5
  done
}

# run NAME LABEL ARGS...: one load run, report in $out/NAME-LABEL.json; the
# server's CPU over the whole run in NAME-LABEL.cpu, and its CPU and write
# system calls sampled through the run in NAME-LABEL.samples.
run() {
  local name=$1 label=$2; shift 2
  local port pid sampler; eval "port=\$PORT_$name pid=\$PID_$name"
  local c0; c0=$(cpu "$pid")
  samples "$pid" >"$out/$name-$label.samples" &
  sampler=$!
  "$out/loadtest" --url "http://127.0.0.1:$port" --quiet --report "$out/$name-$label.json" "$@" >"$out/$name-$label.txt" 2>&1 || true
  echo $(( $(cpu "$pid") - c0 )) >"$out/$name-$label.cpu"
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
}

# steady NAME LABEL: server CPU µs and write(2)-family calls per player
# message over the steady window only: from 2 s after the last player
# arrived to 2 s before the load ended (no connects, joins, drain or
# departures), messages counted from the load tool's per-second timeline.
steady() {
  python3 - "$out/$1-$2.json" "$out/$1-$2.samples" "$tick" <<'PY' 2>/dev/null || echo "- -"
import calendar, json, re, sys, time
rep = json.load(open(sys.argv[1])); tick = float(sys.argv[3])
s = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 3]
m = re.match(r"(.{19})(\.\d+)?(Z|([+-])(\d\d):(\d\d))$", rep["started_at"])
t0 = calendar.timegm(time.strptime(m[1], "%Y-%m-%dT%H:%M:%S")) + float(m[2] or 0)
if m[4]:
    t0 -= (1 if m[4] == "+" else -1) * (int(m[5]) * 3600 + int(m[6]) * 60)
tl = rep["timeline"]; target = rep["players"]["target"]
full = [x["t_s"] for x in tl if x["players"] >= min(target, max(y["players"] for y in tl))]
# from 2 s after the crowd is complete to 3 s before the timeline ends (the
# last second is partial, and the drain follows the load)
a, b = full[0] + 2, min(tl[-1]["t_s"] - 3, s[-1][0] - t0)
msgs, prev = 0.0, 0.0
for x in tl:
    lo, hi = max(prev, a), min(x["t_s"], b)
    if hi > lo:
        msgs += x["sent_per_s"] * (hi - lo)
    prev = x["t_s"]
def at(t, i):  # interpolated sample column i at unix time t
    for p, q in zip(s, s[1:]):
        if p[0] <= t <= q[0]:
            return p[i] + (q[i] - p[i]) * (t - p[0]) / (q[0] - p[0])
    raise ValueError
ticks = at(t0 + b, 1) - at(t0 + a, 1); calls = at(t0 + b, 2) - at(t0 + a, 2)
print(round(ticks / tick * 1e6 / msgs, 1), round(calls / msgs, 1))
PY
}

field() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d.get(k,{}) if isinstance(d,dict) else {}
print("-" if d=={} else round(d,1) if isinstance(d,float) else d)' "$1" "$2" 2>/dev/null || echo -; }

# Routing (docs/ROUTING.md): auto with 50 operators beside broadcast with
# 10, same players and rate; per player message the deliveries the
# operators read and the server's CPU. BENCH_ROUTING_RATE is per player
# (2.5: 5,000 messages/s with 2,000 players); BENCH_ONLY_ROUTING=1 runs
# this part alone.
tick=$(getconf CLK_TCK)
routing_bench() {
  local rate=${BENCH_ROUTING_RATE:-2.5} label
  local common=(--players "$players" --rate "$rate" --reply-chance 1 --reply-think 200ms --ramp 2000 --duration "$duration")
  start switchboard SWITCHBOARD_ROUTING=auto SWITCHBOARD_MAX_CHATS_PER_OPERATOR=1000
  run switchboard route-auto50 "${common[@]}" --operators 50 --routing auto
  stop switchboard
  start switchboard
  run switchboard route-broadcast10 "${common[@]}" --operators 10
  stop switchboard
  printf '\n== routing: %s players at %s msg/s each (%s cores)\n' "$players" "$rate" "$(nproc)"
  printf '%-34s %12s %12s %12s %12s %10s %8s\n' run sent/s deliv/msg "µs/msg" "steady" "p99 ms" lost
  for label in route-broadcast10 route-auto50; do
    local sent ticks
    sent=$(field "$out/switchboard-$label.json" messages.player_to_operator.sent)
    ticks=$(cat "$out/switchboard-$label.cpu" 2>/dev/null || echo 0)
    printf '%-34s %12s %12s %12s %12s %10s %8s\n' "$label" "$(field "$out/switchboard-$label.json" throughput.sent_per_s)" \
      "$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["messages"]["deliveries_per_message"],2))' "$out/switchboard-$label.json" 2>/dev/null || echo -)" \
      "$(python3 -c "print(round($ticks/$tick*1e6/max(1,float('${sent/-/0}')),1))")" \
      "$(steady switchboard "$label" | cut -d' ' -f1)" \
      "$(field "$out/switchboard-$label.json" latency.player_to_operator.p99_ms)" "$(field "$out/switchboard-$label.json" messages.lost)"
  done
}

[ -n "${BENCH_ONLY_ROUTING:-}" ] || echo "== Go benchmarks"
[ -n "${BENCH_SKIP_GO:-}${BENCH_ONLY_ROUTING:-}" ] || go test -run '^$' -bench . -benchmem ./actors ./messages | grep -E '^Benchmark'

# idle NAME LABEL COUNT TRANSPORT: RSS per idle connection of a fresh
# server: its growth from a second after its start once every player has
# joined (as /health counts them; NAME-LABEL.arrival: how long that took)
# and 3 s have passed (NAME-LABEL.rss-arrival: the arrival's peak is still
# held), and 12 s (NAME-LABEL.rss: settled; Switchboard returns a burst's
# free memory once 5 s pass without a collection, and again once the
# arrival's idle HTTP connections have closed), divided by the players
# joined; NAME-LABEL.rss-quiet once the arrival's HTTP connections have
# closed as well (net/http's idle timeout, the load tool's spare ones) and
# 6 s more. The players stay 45 s, past the last sample of a slow arrival. On a busy machine the crowd arrives late; sampling at a fixed
# time would count handshakes still under way as idle sessions. If not all
# arrive within 60 s, the figure is taken when the most had joined, and
# the players joined are noted.
idle() {
  local name=$1 label=$2 count=$3 transport=$4 pid port r0 lt n best=0 at=0 at3=0 quiet='' i t0
  pid=$(eval echo \$PID_$name) port=$(eval echo \$PORT_$name)
  sleep 1 # the server's own start (its first collection) is not the crowd's
  r0=$(rss "$pid")
  run "$name" "$label" --players "$count" --operators 0 --rate 0 --ramp 2000 --duration 45s --transport "$transport" &
  lt=$!
  t0=$(date +%s.%N)
  for i in $(seq 120); do
    sleep 0.5
    n=$(curl -s -m 2 "http://127.0.0.1:$port/health" | grep -o '"total": *[0-9]*' | head -1 | tr -dc '0-9' || true)
    if [ "${n:-0}" -gt "$best" ]; then best=$n at=$(rss "$pid") at3=$at; fi
    if [ "$best" -ge "$count" ]; then
      python3 -c "print(round($(date +%s.%N) - $t0, 1))" >"$out/$name-$label.arrival"
      sleep 3; at3=$(rss "$pid"); sleep 9; at=$(rss "$pid")
      # Then once the arrival's HTTP connections have closed (at most
      # 20 s more), a quiet spell and a tick later: the idle crowd alone.
      for i in $(seq 40); do
        [ "$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)" -le $((best + 2)) ] && break
        sleep 0.5
      done
      sleep 6; quiet=$(rss "$pid")
      break
    fi
  done
  if [ "$best" -gt 0 ]; then
    echo "$(( (at - r0) * 1024 / best ))" >"$out/$name-$label.rss"
    echo "$(( (at3 - r0) * 1024 / best ))" >"$out/$name-$label.rss-arrival"
    echo "$(( (${quiet:-$at} - r0) * 1024 / best ))" >"$out/$name-$label.rss-quiet"
  else
    echo "-" >"$out/$name-$label.rss"
    echo "-" >"$out/$name-$label.rss-arrival"
    echo "-" >"$out/$name-$label.rss-quiet"
  fi
  [ -f "$out/$name-$label.arrival" ] || echo "-" >"$out/$name-$label.arrival"
  echo "$best" >"$out/$name-$label.joined"
  wait "$lt"
}

# idle_transports COUNT: Switchboard's idle memory per session for each
# transport socket.io-client may use, websocket-only beside them as their
# control. What an upgraded or polling session leaves depends on how many
# were polling at once, so on how fast the crowd arrived, which on a
# shared machine varies from run to run: BENCH_IDLE_RUNS rounds (3), each
# of the three on a fresh server in the same minute, in a rotating order;
# idle-TRANSPORT.rss is the median, .rss-runs every run with its arrival
# time in seconds and the figure once the arrival's connections had closed
# (.rss-quiet in idle).
idle_transports() {
  local count=$1 round tr order label runs
  for tr in websocket upgrade polling; do : >"$out/switchboard-idle-$tr.rss-runs"; done
  for round in $(seq "${BENCH_IDLE_RUNS:-3}"); do
    case $((round % 3)) in
      1) order="websocket upgrade polling" ;;
      2) order="upgrade polling websocket" ;;
      0) order="polling websocket upgrade" ;;
    esac
    for tr in $order; do
      label=idle-$tr.$round
      start switchboard
      idle switchboard "$label" "$count" "$tr"
      stop switchboard
      echo "$(cat "$out/switchboard-$label.rss") $(cat "$out/switchboard-$label.arrival")s $(cat "$out/switchboard-$label.rss-quiet")" \
        >>"$out/switchboard-idle-$tr.rss-runs"
      cp "$out/switchboard-$label.rss-arrival" "$out/switchboard-idle-$tr.rss-arrival"
    done
  done
  for tr in websocket upgrade polling; do
    runs=$(cut -d' ' -f1 "$out/switchboard-idle-$tr.rss-runs" | grep -v -- - | sort -n)
    if [ -n "$runs" ]; then
      echo "$runs" | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}' >"$out/switchboard-idle-$tr.rss"
    else
      echo "-" >"$out/switchboard-idle-$tr.rss"
    fi
  done
}

stop() { kill "$(eval echo \$PID_$1)"; wait "$(eval echo \$PID_$1)" 2>/dev/null || true; }
if [ -n "${BENCH_ONLY_ROUTING:-}" ]; then
  routing_bench
  exit 0
fi

for name in switchboard node; do
  start "$name"
  # 1,000 player messages/s, one operator replies to each.
  run "$name" 1k --players "$players" --operators "$operators" --rate 0.5 --reply-chance 1 --reply-think 200ms --ramp 2000 --duration "$duration"
  # 5,000 player messages/s.
  run "$name" 5k --players "$players" --operators "$operators" --rate 2.5 --reply-chance 1 --reply-think 200ms --ramp 2000 --duration "$duration"
  stop "$name"
  # Idle players with heartbeats: memory per connection, connection rate.
  start "$name"
  idle "$name" idle "$idle" websocket
  stop "$name"
done

# Switchboard alone: the transports socket.io-client may use, continuity
# on (the default) against off, production mode, and a storm of drops.
if [ -z "${BENCH_SKIP_VARIANTS:-}" ]; then
  one_k=(--players "$players" --operators "$operators" --rate 0.5 --reply-chance 1 --reply-think 200ms --ramp 2000 --duration "$duration")
  five_k=(--players "$players" --operators "$operators" --rate 2.5 --reply-chance 1 --reply-think 200ms --ramp 2000 --duration "$duration")
  start switchboard
  run switchboard 1k-upgrade "${one_k[@]}" --transport upgrade
  run switchboard 1k-polling "${one_k[@]}" --transport polling
  run switchboard 5k-upgrade "${five_k[@]}" --transport upgrade
  # 2,000 players dropped at once, 10 s in: every one must recover.
  run switchboard storm "${one_k[@]}" --duration 25s --storm "$players@10s"
  stop switchboard
  start switchboard SWITCHBOARD_RECOVERY_WINDOW=0
  run switchboard 1k-norecovery "${one_k[@]}"
  stop switchboard
  # Production as a user runs it: JSON logs at info, operator tokens, a CORS list.
  secret=bench-secret-bench-secret-bench-secret-0123
  start switchboard NODE_ENV=production SWITCHBOARD_LOG_LEVEL=info SWITCHBOARD_JWT_SECRET=$secret CORS_ORIGIN=https://crm.example.com
  run switchboard 1k-production "${one_k[@]}" --operator-secret "$secret"
  stop switchboard
  idle_transports "$(( idle / 3 ))"
fi

[ -n "${BENCH_SKIP_ROUTING:-}" ] || routing_bench
cpu_per_msg() { # NAME LABEL: server CPU µs per player message
  local sent ticks
  sent=$(field "$out/$1-$2.json" messages.player_to_operator.sent)
  ticks=$(cat "$out/$1-$2.cpu" 2>/dev/null || echo 0)
  python3 -c "print(round($ticks/$tick*1e6/max(1,float('${sent/-/0}')),1))"
}
printf '\n== %s players, %s operators, replies on; load tool on the same cores (%s cores)\n' "$players" "$operators" "$(nproc)"
printf '%-48s %14s %14s\n' "" switchboard node
for label in 1k 5k; do
  for f in throughput.sent_per_s messages.player_to_operator.sent messages.player_to_operator.delivered messages.lost messages.duplicated latency.player_to_operator.p50_ms latency.player_to_operator.p99_ms latency.operator_to_player.p99_ms; do
    printf '%-48s %14s %14s\n' "$label $f" "$(field $out/switchboard-$label.json $f)" "$(field $out/node-$label.json $f)"
  done
  for n in switchboard node; do
    sent=$(field $out/$n-$label.json messages.player_to_operator.sent)
    cpu_ticks=$(cat $out/$n-$label.cpu)
    eval "cpu_$n=$(python3 -c "print(round($cpu_ticks/$tick*1e6/max(1,float('${sent/-/0}')),1))")"
  done
  printf '%-48s %14s %14s\n' "$label server CPU µs per message" "$cpu_switchboard" "$cpu_node"
  read -r st_sb sc_sb <<<"$(steady switchboard "$label")"
  read -r st_node sc_node <<<"$(steady node "$label")"
  printf '%-48s %14s %14s\n' "$label  same, steady window only" "$st_sb" "$st_node"
  printf '%-48s %14s %14s\n' "$label  write system calls per message (steady)" "$sc_sb" "$sc_node"
done
printf '%-48s %14s %14s\n' "idle players connected" "$(field $out/switchboard-idle.json players.connected)" "$(field $out/node-idle.json players.connected)"
printf '%-48s %14s %14s\n' "idle RSS bytes per connection" "$(cat $out/switchboard-idle.rss)" "$(cat $out/node-idle.rss)"
printf '%-48s %14s %14s\n' "idle connect p99 ms" "$(field $out/switchboard-idle.json latency.connect.p99_ms)" "$(field $out/node-idle.json latency.connect.p99_ms)"
if [ -z "${BENCH_SKIP_VARIANTS:-}" ]; then
  printf '\n== Switchboard variants (same players, operators and rates)\n'
  printf '%-34s %10s %10s %10s %10s %8s %8s %8s\n' run sent/s "p99 ms" "µs/msg" "steady" lost dup errors
  for label in 1k 1k-norecovery 1k-production 1k-upgrade 1k-polling 5k 5k-upgrade storm; do
    printf '%-34s %10s %10s %10s %10s %8s %8s %8s\n' "$label" "$(field $out/switchboard-$label.json throughput.sent_per_s)" \
      "$(field $out/switchboard-$label.json latency.player_to_operator.p99_ms)" "$(cpu_per_msg switchboard $label)" \
      "$(steady switchboard "$label" | cut -d' ' -f1)" \
      "$(field $out/switchboard-$label.json messages.lost)" "$(field $out/switchboard-$label.json messages.duplicated)" \
      "$(field $out/switchboard-$label.json errors_total)"
  done
  printf '%-34s %10s %10s %10s\n' "storm recovered / fresh / p99 ms" "$(field $out/switchboard-storm.json recovery.recovered)" \
    "$(field $out/switchboard-storm.json recovery.fresh)" "$(field $out/switchboard-storm.json recovery.time.p99_ms)"
  for tr in upgrade polling websocket; do
    printf '%-34s %10s %s\n' "idle RSS bytes, $tr (median)" "$(cat $out/switchboard-idle-$tr.rss)" \
      "(runs: +12 s, arrival, connections closed: $(paste -sd, $out/switchboard-idle-$tr.rss-runs); at +3 s, last run: $(cat $out/switchboard-idle-$tr.rss-arrival))"
  done
  printf '%-34s %10s\n' "CPU recovery on / off at 1k" "$(python3 -c "print(round($(cpu_per_msg switchboard 1k)/max(0.1,$(cpu_per_msg switchboard 1k-norecovery)),2))")"
  printf '%-34s %10s\n' "CPU production / node at 1k" "$(python3 -c "print(round($(cpu_per_msg switchboard 1k-production)/max(0.1,$(cpu_per_msg node 1k)),2))")"
  printf '%-34s %10s\n' "CPU upgrade / websocket at 1k" "$(python3 -c "print(round($(cpu_per_msg switchboard 1k-upgrade)/max(0.1,$(cpu_per_msg switchboard 1k)),2))")"
  printf '%-34s %10s\n' "CPU polling / websocket at 1k" "$(python3 -c "print(round($(cpu_per_msg switchboard 1k-polling)/max(0.1,$(cpu_per_msg switchboard 1k)),2))")"
fi
echo "raw reports: $out/"
