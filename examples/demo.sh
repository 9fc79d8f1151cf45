#!/usr/bin/env bash
# The demo: tally on its embedded database, realistic usage from 24
# subscriptions (the last closed calendar month and this one so far, at least
# 30 days) loaded through the API, a tenant's usage read back through the
# Azure-compatible usage API, and four billing adapters (WebAssembly
# components built from source) installed and run: over the last week, a
# chargeback CSV for Power BI, a FinOps FOCUS export, and invoice lines
# pushed to a (stand-in) billing system's HTTP API; over the last closed
# month, a statement per subscription that its tenant reads.
# Leaves the host running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${TALLY_DEMO_PORT:-8080}
DATA=${TALLY_DEMO_DIR:-tally-data/demo}
BASE="http://127.0.0.1:$PORT"
BILLING_PORT=${TALLY_DEMO_BILLING_PORT:-8099}

# The dev profile (dependencies optimised, see Cargo.toml) is the one the
# tests build, so the README's two commands compile wasmtime and the rest once;
# a production host is built with `cargo build --release`.
echo "==> Building tally and the example adapters (wasm32-wasip2)"
cargo build --locked -p tally -p tally-usage-generator
adapters/build.sh >/dev/null
BIN=target/debug
TALLY=$BIN/tally

echo "==> Fresh data directory: $DATA"
rm -rf "$DATA" && mkdir -p "$DATA"
OPERATOR=$($TALLY token create --data-dir "$DATA" --role operator --description "demo operator")
TENANT_SUB=7a110000-5e1f-4a7b-9c3d-0badcafe0000
TENANT=$($TALLY token create --data-dir "$DATA" --role tenant --subscription "$TENANT_SUB" --description "demo tenant")

echo "==> Starting tally on $BASE (log: $DATA/tally.log)"
printf '[exports]\ntick = "5s"\n' >"$DATA/tally.toml"
$TALLY serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --config "$DATA/tally.toml" >"$DATA/serve.out" 2>"$DATA/tally.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "$BASE/healthz" >/dev/null && break
  sleep 0.1
done

# The last calendar month (UTC) closed for the statements, whose demo
# manifest waits 1 h for late reports: it ends where the month of 2 hours ago
# starts. Usage is generated from its first day.
MONTH_END=$(date -u -d "2 hours ago" +%Y-%m-01)T00:00:00Z
MONTH_START=$(date -u -d "${MONTH_END%T*} -1 month" +%Y-%m-01)T00:00:00Z
DAYS=$(( ($(date -u +%s) - $(date -u -d "$MONTH_START" +%s)) / 86400 + 1 ))
[ "$DAYS" -ge 30 ] || DAYS=30

echo "==> Generating $DAYS days of hourly usage and importing it through POST /v1/usage"
$BIN/tally-usage-generator --days "$DAYS" >"$DATA/usage.ndjson"
$TALLY import "$DATA/usage.ndjson" --url "$BASE" --token "$OPERATOR"

# The last eight days whose windows have closed: the example manifests wait
# 2 h for late reports, so before 03:00 UTC the last closed day is the day
# before yesterday.
LAST_CLOSED_END=$(date -u -d "3 hours ago" +%Y-%m-%d)
START=$(date -u -d "$LAST_CLOSED_END - 8 days" +%Y-%m-%dT00:00:00Z)
END=${LAST_CLOSED_END}T00:00:00Z
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

echo "==> A billing system's HTTP API on 127.0.0.1:$BILLING_PORT (a stand-in: it logs invoice lines, dropping repeated Idempotency-Keys)"
python3 - "$BILLING_PORT" "$DATA/billing-api.log" <<'PY' &
import http.server, json, sys
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
seen = set()
class Billing(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers.get("Idempotency-Key")
        if key not in seen:
            seen.add(key)
            for line in body["lines"]:
                log.write(json.dumps(line) + "\n")
        self.send_response(201); self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Billing).serve_forever()
PY
BILLING=$!
trap 'kill $SERVER $BILLING 2>/dev/null || true' EXIT

echo "==> Installing four billing adapters (WebAssembly components built from source, pinned by sha256)"
mkdir -p "$DATA/manifests"
for pair in chargeback:chargeback-csv focus:focus billing-webhook:billing-webhook statement:statement; do
  file=${pair%%:*} component=${pair##*:}
  sha=$(sha256sum "target/adapters/$component.wasm" | cut -d' ' -f1)
  # (The statements wait 1 h for late reports here, 1 day in the example.)
  sed -e "s|^sha256 = .*|sha256 = \"$sha\"|" \
      -e "s|https://billing.example|http://127.0.0.1:$BILLING_PORT|g" \
      -e "/^window = \"monthly\"/,/^lag/s|^lag = .*|lag = \"1h\"|" \
      "examples/adapters/$file.toml" >"$DATA/manifests/$file.toml"
  $TALLY adapters install "$DATA/manifests/$file.toml" --component "target/adapters/$component.wasm" \
    --url "$BASE" --token "$OPERATOR" | sed 's/^/   /'
done

echo "==> Exporting the closed days since $START with each (a backfill; from now on the scheduler runs each closed day once)"
for name in chargeback focus billing; do
  echo "   $name:"
  $TALLY export run "$name" --from "$START" --to "$END" --url "$BASE" --token "$OPERATOR" | grep -v '^window' | sed 's/^/   /'
done
echo "   statement (the month $MONTH_START .. $MONTH_END; from now on the scheduler issues each month's a day after it ends):"
$TALLY export run statement --from "$MONTH_START" --to "$MONTH_END" --url "$BASE" --token "$OPERATOR" | sed 's/^/   /'
$TALLY adapters list --url "$BASE" --token "$OPERATOR" | sed 's/^/   /'

echo "==> Cost per cost centre, from the chargeback CSV the host serves for Power BI"
curl -sf -H "Authorization: Bearer $OPERATOR" "$BASE/v1/adapters/chargeback/documents/chargeback.csv?from=$START&to=$END" \
  >"$DATA/chargeback.csv"
python3 - "$DATA/chargeback.csv" "$DATA/billing-api.log" <<'PY'
import csv, json, sys
costs = {}
for row in csv.DictReader(open(sys.argv[1])):
    costs[row["group"]] = costs.get(row["group"], 0.0) + float(row["cost"])
for group, cost in sorted(costs.items(), key=lambda kv: -kv[1]):
    print(f"   {group:<14} {cost:>10.2f} EUR")
lines = [json.loads(l) for l in open(sys.argv[2])]
total = sum(float(l["amount"]) for l in lines)
print(f"   the billing API received {len(lines)} invoice lines, {total:.2f} EUR in all")
PY

echo "==> Tenant $TENANT_SUB reads its statements with its own token (GET /v1/subscriptions/{subscription}/documents)"
curl -sf -H "Authorization: Bearer $TENANT" "$BASE/v1/subscriptions/$TENANT_SUB/documents" >"$DATA/statements.json"
python3 - "$DATA/statements.json" "$BASE" "$TENANT" "$DATA" <<'PY'
import json, sys, urllib.request
listing, base, token, data = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
totals = []
for document in listing["value"]:
    print(f"   {document['window']['start'][:7]}  {document['name']:<56} {document['bytes']:>6} bytes")
    request = urllib.request.Request(base + document["links"]["download"], headers={"Authorization": f"Bearer {token}"})
    body = urllib.request.urlopen(request).read()
    with open(f"{data}/{document['name']}", "wb") as out:
        out.write(body)
    if document["name"].endswith(".csv"):
        total = [line for line in body.decode().splitlines() if line.startswith("total,")]
        if total:
            fields = total[0].split(",")
            totals.append(f"   {document['window']['start'][:7]}  total {fields[-2]} {fields[-1]}")
print("\n".join(totals))
PY

cat <<EOF

tally is running on $BASE (data in $DATA).
The console: open $BASE/ in a browser and sign in by pasting a token:
  operator  $OPERATOR
  tenant    $TENANT  (sees subscription $TENANT_SUB only)
Or try the API:
  curl -s -H "Authorization: Bearer $TENANT" '$USAGE' | python3 -m json.tool | head -40
  curl -s -H "Authorization: Bearer $OPERATOR" '$BASE/subscriptions/provider/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime=$START&reportedEndTime=$END&api-version=2015-06-01-preview' | python3 -m json.tool | head -40
  curl -s -H "Authorization: Bearer $OPERATOR" $BASE/metrics | grep tally_
  curl -s -H "Authorization: Bearer $OPERATOR" $BASE/openapi.json | python3 -m json.tool | less
Documents, refreshed as each day closes (Power BI: Web source with an Authorization header):
  curl -s -H "Authorization: Bearer $OPERATOR" '$BASE/v1/adapters/chargeback/documents/chargeback.csv?from=$START'
  curl -s -H "Authorization: Bearer $OPERATOR" '$BASE/v1/adapters/focus/documents/focus.csv?from=$START'
A tenant's statements (monthly, HTML to read or print and CSV; saved to $DATA/statement-*):
  curl -s -H "Authorization: Bearer $TENANT" $BASE/v1/subscriptions/$TENANT_SUB/documents | python3 -m json.tool
Runs, with their figures and logs:
  $BIN/tally adapters runs chargeback --url $BASE --token $OPERATOR
  curl -s -H "Authorization: Bearer $OPERATOR" $BASE/v1/adapters/billing/runs | python3 -m json.tool
Invoice lines the billing API received: $DATA/billing-api.log
Tokens: operator $OPERATOR
        tenant   $TENANT  (subscription $TENANT_SUB)
Press Ctrl-C to stop.
EOF
wait $SERVER
