#!/usr/bin/env bash
# The hub's API against its own /openapi.yaml: schemathesis (PyPI) with --checks all, operator key,
# against a real felhom-hub on SQLite. Bounded: a fixed number of examples per operation.
# Usage: scripts/interop/openapi_conformance.sh BIN_DIR
set -euo pipefail
bin_dir=$1
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
op="st-operator-key-0123456789abcdefgh"
# Load: per-key limits off; long-polls answer within a second so the fuzzer does not wait 55 s each.
FELHOM_HUB_OPERATOR_KEY=$op FELHOM_HUB_RATE_LIMIT_REPORTS_PER_MINUTE=0 FELHOM_HUB_RATE_LIMIT_EVENTS_PER_MINUTE=0 \
  FELHOM_HUB_MAX_LONG_POLL_SECONDS=1 "$bin_dir/felhom-hub" serve --listen "127.0.0.1:$port" --database "sqlite:$work/hub.sqlite" \
  >"$work/hub.log" 2>&1 &
hub=$!
trap 'kill $hub 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
cd "$work"
PYTHONPATH="$here" SCHEMATHESIS_HOOKS=schemathesis_hooks st run "http://127.0.0.1:$port/openapi.yaml" \
  -H "Authorization: Bearer $op" --checks all --max-examples 25 --workers 1 --seed 1 >"$work/st.log" 2>&1 && status=0 || status=$?
grep -E "^(Failures|API Operations|Test cases)" -A3 "$work/st.log" | grep -v "^--$" || true
tail -1 "$work/st.log"
if [ $status -ne 0 ]; then
  sed -n '/FAILURES/,$p' "$work/st.log" | head -120
  echo "schemathesis found failures (exit $status)"
  exit 1
fi
