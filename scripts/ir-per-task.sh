#!/usr/bin/env bash
# Instructions a whole SQLite `cycle` executes per task, over loopback HTTP,
# counted by valgrind's callgrind in every process: the bench's clients
# (producers and workers), the server's request threads and its writer
# thread. `cycle` on a fast disk is bound by this CPU (docs/performance.md,
# "What limits"), and timed runs drift by up to 2x between runs minutes
# apart, while these counts move by a percent or two.
#
#   scripts/ir-per-task.sh [--json] BIN...
#
# Each BIN is an `aruntime` binary (a release build). `aruntime bench
# --target sqlite --workload cycle` runs under `valgrind --trace-children`
# twice, for 2,000 and for 6,000 tasks; the difference over 4,000 is what
# one task costs, start-up, the baseline and shutdown cancelled out. A
# binary takes a minute or two. Needs valgrind and python3.
#
# Not counted: the kernel (loopback TCP, the WAL's writes), a third of the
# CPU of such a run by `perf record -a`; and under callgrind the claims come
# back smaller (13-16 tasks each against 18-30 untraced), which puts a little
# more of each claim on each task than an untraced run does.
set -euo pipefail
JSON=0
if [ "${1:-}" = --json ]; then JSON=1; shift; fi
[ $# -ge 1 ] || { sed -n 2,20p "$0" >&2; exit 2; }
for tool in valgrind callgrind_annotate python3; do
  command -v "$tool" >/dev/null || { echo "ir-per-task.sh needs $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Prints "CLIENTS REQUEST WRITER": the instructions of the bench process,
# of the server's threads but its writer, and of the writer, for N tasks.
count() { # BIN N
  local dir="$WORK/run.$2"
  rm -rf "$dir"; mkdir -p "$dir"
  # The bench stops its server by closing its input, so the server exits
  # normally and callgrind writes its counts (a SIGKILL would lose them).
  valgrind --tool=callgrind --trace-children=yes --separate-threads=yes \
    --callgrind-out-file="$dir/cg.%p" \
    "$1" bench --target sqlite --workload cycle --tasks "$2" --baseline-secs 0.5 --floor-secs 0 \
    --dir "$dir/data" >"$dir/out" 2>"$dir/err" ||
    { tail -20 "$dir/err" >&2; exit 1; }
  python3 - "$dir" <<'EOF'
import collections, glob, re, subprocess, sys
procs = collections.defaultdict(lambda: [0, 0])
for f in glob.glob(sys.argv[1] + "/cg.*"):
    m = re.match(r".*/cg\.(\d+)(?:-\d+)?$", f)
    if not m:
        continue
    total = next((int(l.split()[1]) for l in open(f, errors="replace")
                  if l.startswith(("summary:", "totals:"))), 0)
    p = procs[int(m.group(1))]
    p[0] += total
    tree = subprocess.run(["callgrind_annotate", "--inclusive=yes", f],
                          capture_output=True, text=True).stdout
    if "sqlite::writer::Writer::spawn" in tree:
        p[1] += total
if len(procs) != 2:
    sys.exit(f"expected the bench and one server, found {len(procs)} processes")
# The bench starts first, so it has the lower process id.
(bench, _), (server, writer) = (procs[k] for k in sorted(procs))
print(bench, server - writer, writer)
EOF
}

[ $JSON = 1 ] || printf '%-34s %10s %10s %10s %10s\n' BINARY 'PER TASK' CLIENTS 'REQUEST' WRITER
first=1
[ $JSON = 0 ] || printf '['
for bin in "$@"; do
  echo "  $bin: 2,000 tasks, then 6,000, under callgrind" >&2
  read -r c1 r1 w1 < <(count "$bin" 2000)
  read -r c2 r2 w2 < <(count "$bin" 6000)
  c=$(((c2 - c1) / 4000)) r=$(((r2 - r1) / 4000)) w=$(((w2 - w1) / 4000))
  if [ $JSON = 1 ]; then
    [ $first = 1 ] || printf ','
    printf '{"binary":"%s","per_task":%d,"clients":%d,"request_threads":%d,"writer":%d}' \
      "$bin" $((c + r + w)) "$c" "$r" "$w"
  else
    printf '%-34s %10d %10d %10d %10d\n' "$bin" $((c + r + w)) "$c" "$r" "$w"
  fi
  first=0
done
[ $JSON = 0 ] || printf ']\n'
