#!/usr/bin/env bash
# The hub's API against its own /openapi.yaml: schemathesis (PyPI) with --checks all against a real
# felhom-hub on SQLite, twice: with the operator key, and with a host key (the agent's view: reports,
# control, events, signed-op delivery). Bounded: a fixed number of examples per operation.
# Usage: scripts/interop/openapi_conformance.sh BIN_DIR
set -euo pipefail
bin_dir=$1
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
op="st-operator-key-0123456789abcdefgh"
base="http://127.0.0.1:$port"
# Load: per-key limits off; long-polls answer within a second so the fuzzer does not wait 55 s each.
FELHOM_HUB_OPERATOR_KEY=$op FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE=0 FELHOM_HUB_RATE_LIMIT_EVENTS_PER_MINUTE=0 \
  FELHOM_HUB_MAX_LONG_POLL_SECONDS=1 "$bin_dir/felhom-hub" serve --listen "127.0.0.1:$port" --database "sqlite:$work/hub.sqlite" \
  >"$work/hub.log" 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null || true; [ -n "${KEEP_ST_LOGS:-}" ] && cp "$work"/st-*.log /tmp/ 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

# A customer and a host whose key the second run uses.
customer=$(curl -sf -H "Authorization: Bearer $op" -H 'Content-Type: application/json' \
  -d '{"name":"Schemathesis","email":"st@example.hu","domain":"st.example.hu"}' "$base/api/v1/customers" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
host_key=$(curl -sf -H "Authorization: Bearer $op" -H 'Content-Type: application/json' \
  -d "{\"customer_id\":\"$customer\",\"name\":\"st-box\"}" "$base/api/v1/hosts" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')

failed=0
run() {  # run LABEL KEY
  local label=$1 key=$2 status
  (cd "$work" && PYTHONPATH="$here" SCHEMATHESIS_HOOKS=schemathesis_hooks st run "$base/openapi.yaml" \
    -H "Authorization: Bearer $key" --checks all --max-examples 25 --workers 1 --seed 1 >"$work/st-$label.log" 2>&1) && status=0 || status=$?
  echo "-- schemathesis with the $label key"
  grep -E "^(Failures|API Operations|Test cases)" -A3 "$work/st-$label.log" | grep -v "^--$" || true
  tail -1 "$work/st-$label.log"
  if [ "$status" -ne 0 ]; then
    sed -n '/FAILURES/,$p' "$work/st-$label.log" | head -120
    echo "schemathesis with the $label key found failures (exit $status)"
    failed=1
  fi
}
run operator "$op"
run host "$host_key"
exit $failed
