#!/bin/bash
# A retrain as a supervisor does it (README "Retraining from corrections", "Where a job starts"): the 10 complaints
# of data/scenario/corrections.jsonl taken in through the API (routed by the active model), corrected by the
# scenario's rule 14a, then `triage retrain start --follow` with no parameters.
#
#   bash scripts/retrain_scenario.sh [DATA_DIR]     # default: a new temporary directory (never your own data)
#
# The new version is registered (and promoted if the gate passes) in DATA_DIR only.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRIAGE_DATA_DIR="${1:-$(mktemp -d)}" TRIAGE_TORCH_THREADS="${TRIAGE_TORCH_THREADS:-2}"
PORT="${PORT:-8765}"
B=.venv/bin
echo "data dir: $TRIAGE_DATA_DIR" >&2
BOSS=$($B/triage keys create --role supervisor --name "scenario-boss-$$" 2>/dev/null)
$B/triage serve --port "$PORT" > "$TRIAGE_DATA_DIR/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  curl -sf -H "Authorization: Bearer $BOSS" "localhost:$PORT/readyz" > /dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "the server did not start: $TRIAGE_DATA_DIR/serve.log" >&2; exit 1; }
  sleep 1
done
$B/python - "$BOSS" "$PORT" <<'PY'
import json, sys, urllib.request

key, port = sys.argv[1], sys.argv[2]

def call(path, body):
    request = urllib.request.Request(f"http://localhost:{port}{path}", json.dumps(body).encode(),
                                     {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))

for line in open("data/scenario/corrections.jsonl"):
    example = json.loads(line)
    ticket = call("/v1/tickets", {"text": example["input"]})
    wanted = [d.strip() for d in example["output"].split(",")]
    call(f"/v1/tickets/{ticket['id']}/corrections", {"departments": wanted, "why": "rule 14a (data/scenario/RULE.md)"})
    print(f"ticket {ticket['id']}: routed {', '.join(ticket['departments'])}; corrected to {', '.join(wanted)}")
PY
kill $SERVER; wait $SERVER 2>/dev/null || true
/usr/bin/time -f "retrain wall time %e s" $B/triage retrain start --follow --who scenario
