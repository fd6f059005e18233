#!/usr/bin/env bash
# Instructions a SQLite `aruntime serve` executes per `POST /v1/tasks`,
# counted by valgrind's callgrind: the request threads apart from the
# writer thread. Counts do not drift with the host's speed, which moves
# the timed benchmarks by up to 2x between runs minutes apart
# (docs/performance.md, finding 64), so a change of a few percent on the
# request path shows here when `aruntime bench` cannot see it.
#
#   scripts/ir-per-create.sh [--json] [--parked] BIN...
#
# Each BIN is an `aruntime` binary (a release build). It is started under
# callgrind twice, for 200 and for 2,200 creates sent one at a time over one
# keep-alive connection; the difference over 2,000 is what one create costs,
# start-up and shutdown cancelled out.
#
# --parked counts what `bench --workload latency` does per sample instead:
# a worker's claim long-polls an empty queue, a create arrives (and is
# handed to the parked claim in the same transaction), the worker
# completes the task. 30 and then 130 samples, the difference over 100;
# each sample waits 0.12 s for the claim to park, so a binary takes about
# a minute. Needs valgrind, python3 and curl.
set -euo pipefail
JSON=0 PARKED=0
while :; do
  case "${1:-}" in
    --json) JSON=1; shift ;;
    --parked) PARKED=1; shift ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n 2,21p "$0" >&2; exit 2; }
for tool in valgrind callgrind_annotate python3 curl; do
  command -v "$tool" >/dev/null || { echo "ir-per-create.sh needs $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/drive.py" <<'EOF'
import http.client, json, sys, threading, time
port, token_file, n, parked = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
token = open(token_file).read().strip()
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
conn = http.client.HTTPConnection("127.0.0.1", port)
worker = http.client.HTTPConnection("127.0.0.1", port)

def call(c, path, body, want):
    c.request("POST", path, json.dumps(body), headers)
    r = c.getresponse()
    got = r.read()
    if r.status != want:
        sys.exit(f"POST {path}: {r.status} {got[:200]!r}")
    return json.loads(got)

for i in range(n):
    if not parked:
        call(conn, "/v1/tasks", {"title": f"t{i}"}, 201)
        continue
    out = {}
    claim = threading.Thread(target=lambda: out.update(
        r=call(worker, "/v1/leases", {"worker": "w", "wait_ms": 20000}, 200)))
    claim.start()
    time.sleep(0.12)  # long enough, under callgrind, for the claim to park
    call(conn, "/v1/tasks", {"title": f"t{i}"}, 201)
    claim.join()
    leases = out.get("r", {}).get("leases") or sys.exit(f"sample {i}: no lease")
    lease = leases[0]
    call(worker, f"/v1/tasks/{lease['task']['id']}/complete", {"lease": lease["lease"], "result": {}}, 200)
EOF

# Prints "TOTAL WRITER": instructions of the whole server and of its writer
# thread, for N creates.
count() { # BIN N
  local dir="$WORK/run.$2" port=$((20000 + RANDOM % 20000))
  rm -rf "$dir"; mkdir -p "$dir"
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/cg" \
    "$1" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" --log warn \
    >"$dir/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    [ -f "$dir/data/admin.token" ] && curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.2
  done
  python3 "$WORK/drive.py" "$port" "$dir/data/admin.token" "$2" "$PARKED"
  kill -INT "$pid"
  wait "$pid" || true
  local total=0 writer=0 f n
  for f in "$dir"/cg-*; do
    # awk reads to the end: an early exit would fail the pipe (pipefail).
    n=$(callgrind_annotate "$f" | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
    total=$((total + ${n:-0}))
    if [ "$(callgrind_annotate --inclusive=yes "$f" | grep -c 'sqlite::writer::Writer::spawn')" -gt 0 ]; then
      writer=$((writer + ${n:-0}))
    fi
  done
  echo "$total $writer"
}

if [ $PARKED = 1 ]; then SMALL=30 LARGE=130 UNIT=sample; else SMALL=200 LARGE=2200 UNIT=create; fi
DIFF=$((LARGE - SMALL))
[ $JSON = 1 ] || printf '%-40s %12s %12s %12s\n' BINARY "PER ${UNIT^^}" WRITER 'REQUEST THR'
first=1
[ $JSON = 0 ] || printf '['
for bin in "$@"; do
  echo "  $bin: $SMALL ${UNIT}s, then $LARGE, under callgrind" >&2
  read -r t1 w1 < <(count "$bin" $SMALL)
  read -r t2 w2 < <(count "$bin" $LARGE)
  per=$(((t2 - t1) / DIFF)); writer=$(((w2 - w1) / DIFF)); req=$((per - writer))
  if [ $JSON = 1 ]; then
    [ $first = 1 ] || printf ','
    printf '{"binary":"%s","per_%s":%d,"writer":%d,"request_threads":%d}' "$bin" "$UNIT" "$per" "$writer" "$req"
  else
    printf '%-40s %12d %12d %12d\n' "$bin" "$per" "$writer" "$req"
  fi
  first=0
done
[ $JSON = 0 ] || printf ']\n'
