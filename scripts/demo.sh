#!/usr/bin/env bash
# A worker hands a task off to another: the second one resumes from the
# first one's checkpoint and notes. Talks to a running `aruntime serve`.
#   ARUNTIME_URL   default http://127.0.0.1:8770
#   ARUNTIME_TOKEN default: the contents of ./.aruntime/admin.token
set -euo pipefail
command -v jq >/dev/null || { echo "demo.sh needs jq (apt-get install jq)" >&2; exit 1; }
URL=${ARUNTIME_URL:-http://127.0.0.1:8770}
TOKEN=${ARUNTIME_TOKEN:-$(cat "${ARUNTIME_DATA_DIR:-./.aruntime}/admin.token")}

api() { # METHOD PATH [JSON]
  curl -sS -X "$1" "$URL$2" -H "authorization: Bearer $TOKEN" \
    ${3:+-H 'content-type: application/json' -d "$3"}
}

echo "1. A person adds a task."
TASK=$(api POST /v1/tasks '{"title":"Write the CSV importer","goal":"Import customers.csv into the CRM.","acceptance":["all 1,204 rows imported","duplicates merged"]}' | jq -r .id)
echo "   task $TASK"

echo "2. Worker A (a coding agent) leases it, checkpoints, and hands off when its context fills up."
LEASE=$(api POST /v1/leases '{"worker":"agent-A","ttl_s":60}' | jq -r '.leases[0].lease')
api POST "/v1/tasks/$TASK/checkpoints" "{\"lease\":\"$LEASE\",\"summary\":\"parser done, 600/1204 rows imported\",\"state\":{\"next_row\":601}}" | jq -c '{checkpoint: .seq, summary}'
api POST "/v1/tasks/$TASK/release" "{\"lease\":\"$LEASE\",\"notes\":\"context window full; rows 1-600 are in; resume at row 601\",\"do_not_retry\":[\"bulk insert (the CRM API rejects batches > 50)\"]}" | jq -c '{status}'

echo "3. Worker A's token is now useless (fenced):"
api POST "/v1/tasks/$TASK/complete" "{\"lease\":\"$LEASE\"}" | jq -c .error

echo "4. Worker B leases it and gets everything it needs to resume:"
GRANT=$(api POST /v1/leases '{"worker":"agent-B"}')
echo "$GRANT" | jq '.leases[0] | {attempt, resume_from: .context.latest_checkpoint.state, previous: [.context.attempts[] | {worker, outcome, notes}], do_not_retry: .context.do_not_retry}'
LEASE=$(echo "$GRANT" | jq -r '.leases[0].lease')

echo "5. Worker B finishes."
api POST "/v1/tasks/$TASK/complete" "{\"lease\":\"$LEASE\",\"result\":{\"imported\":1204,\"merged\":17}}" | jq -c '{status, result}'
echo "6. The board:"
api GET /v1/board | jq -c '[.columns[] | {(.status): .count}] | add'
