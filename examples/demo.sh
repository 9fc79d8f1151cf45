#!/usr/bin/env bash
# The demo: tally on its embedded database, 30 days of realistic usage from
# 24 subscriptions loaded through the API, a tenant's usage read back through
# the Azure-compatible usage API, and the chargeback adapter (a WebAssembly
# component built from source) rating a week of it into a CSV for Power BI.
# Leaves the host running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${TALLY_DEMO_PORT:-8080}
DATA=${TALLY_DEMO_DIR:-tally-data/demo}
BASE="http://127.0.0.1:$PORT"

echo "==> Building tally (release) and the example adapters (wasm32-wasip2)"
cargo build --release --locked -p tally -p tally-usage-generator
adapters/build.sh >/dev/null
TALLY=target/release/tally

echo "==> Fresh data directory: $DATA"
rm -rf "$DATA" && mkdir -p "$DATA"
OPERATOR=$($TALLY token create --data-dir "$DATA" --role operator --description "demo operator")
TENANT_SUB=7a110000-5e1f-4a7b-9c3d-0badcafe0000
TENANT=$($TALLY token create --data-dir "$DATA" --role tenant --subscription "$TENANT_SUB" --description "demo tenant")

echo "==> Starting tally on $BASE (log: $DATA/tally.log)"
$TALLY serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$DATA/serve.out" 2>"$DATA/tally.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "$BASE/healthz" >/dev/null && break
  sleep 0.1
done

echo "==> Generating 30 days of hourly usage and importing it through POST /v1/usage"
target/release/tally-usage-generator --days 30 >"$DATA/usage.ndjson"
$TALLY import "$DATA/usage.ndjson" --url "$BASE" --token "$OPERATOR"

START=$(date -u -d "8 days ago" +%Y-%m-%dT00:00:00Z)
END=$(date -u +%Y-%m-%dT00:00:00Z)
USAGE="$BASE/subscriptions/$TENANT_SUB/providers/Microsoft.Commerce/UsageAggregates?reportedStartTime=$START&reportedEndTime=$END&aggregationGranularity=Daily&api-version=2015-06-01-preview"

echo "==> What tenant $TENANT_SUB used (reported $START .. $END), read with the tenant's token"
python3 - "$USAGE" "$TENANT" <<'PY'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
totals, rows, pages = {}, 0, 0
while url:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    page = json.load(urllib.request.urlopen(request))
    pages += 1
    for row in page["value"]:
        p = row["properties"]
        key = (p["meterName"], p["unit"])
        totals[key] = totals.get(key, 0.0) + p["quantity"]
        rows += 1
    url = page.get("nextLink")
print(f"   {rows} daily rows in {pages} page(s)")
for (name, unit), quantity in sorted(totals.items()):
    print(f"   {name:<28} {quantity:>12.2f}  {unit}")
PY

echo "==> The chargeback adapter rates that week for every subscription (sandboxed WebAssembly)"
$TALLY adapter test target/adapters/chargeback-csv.wasm --config examples/adapters/chargeback.toml \
  --usage "$DATA/usage.ndjson" --from "$START" --to "$END" --out "$DATA/exports" | sed 's/^/   /'
python3 - "$DATA/exports/chargeback.csv" <<'PY'
import csv, sys
costs = {}
for row in csv.DictReader(open(sys.argv[1])):
    costs[row["group"]] = costs.get(row["group"], 0.0) + float(row["cost"])
print("   cost per cost centre:")
for group, cost in sorted(costs.items(), key=lambda kv: -kv[1]):
    print(f"   {group:<14} {cost:>10.2f} EUR")
PY

cat <<EOF

tally is running on $BASE (data in $DATA). Try:
  curl -s -H "Authorization: Bearer $TENANT" '$USAGE' | python3 -m json.tool | head -40
  curl -s -H "Authorization: Bearer $OPERATOR" '$BASE/subscriptions/provider/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime=$START&reportedEndTime=$END&api-version=2015-06-01-preview' | python3 -m json.tool | head -40
  curl -s -H "Authorization: Bearer $OPERATOR" $BASE/metrics | grep tally_
  curl -s -H "Authorization: Bearer $OPERATOR" $BASE/openapi.json | python3 -m json.tool | less
The chargeback CSV (ready for Power BI): $DATA/exports/chargeback.csv
Tokens: operator $OPERATOR
        tenant   $TENANT  (subscription $TENANT_SUB)
Press Ctrl-C to stop.
EOF
wait $SERVER
