#!/usr/bin/env bash
# The API against its own OpenAPI document: schemathesis (pinned in
# tests/python/requirements-schemathesis.txt; tests/run.sh installs it into
# .venv) sends every operation of a running `tally serve` generated requests,
# valid and invalid, with an operator token (and without), and fails on a
# 5xx, an answer that breaks its schema, or a status, content type or header
# that /openapi.json does not name.
#
#   tests/schemathesis.sh            # on a fresh embedded database
#   tests/schemathesis.sh postgres   # on a fresh database on TALLY_TEST_POSTGRES's server
#
# Bounded: at most EXAMPLES generated requests per operation and phase
# (default 30; about 900 requests, under a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-sqlite}
examples=${EXAMPLES:-30}
schemathesis=$PWD/.venv/bin/schemathesis
if [ ! -x "$schemathesis" ]; then
  echo "tests/schemathesis.sh: $schemathesis is missing; tests/run.sh installs it" >&2
  exit 1
fi

# TALLY_BIN: another build to check (else the debug build of this tree).
tally=${TALLY_BIN:-}
if [ -z "$tally" ]; then
  cargo build --locked --quiet -p tally --bin tally
  tally=$PWD/target/debug/tally
fi
work=$(mktemp -d)
database=()
database_name=
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$database_name" ] && psql "$TALLY_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $database_name WITH (FORCE)"
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$backend" = postgres ]; then
  : "${TALLY_TEST_POSTGRES:?tests/schemathesis.sh postgres needs TALLY_TEST_POSTGRES}"
  database_name=tally_schemathesis_$$
  psql "$TALLY_TEST_POSTGRES" -qc "CREATE DATABASE $database_name"
  database=(--database "${TALLY_TEST_POSTGRES%/*}/$database_name")
fi

token=$("$tally" token create --data-dir "$work" "${database[@]}" --role operator)
"$tally" serve --data-dir "$work" "${database[@]}" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do
  grep -q '^tally listening on ' "$work/serve.out" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
base=$(sed -n 's/^tally listening on //p' "$work/serve.out")
curl --silent --show-error --fail -H "Authorization: Bearer $token" "$base/openapi.json" >"$work/openapi.json"

# An installation with a succeeded run and two documents (a CSV and an HTML
# page), so that the adapter routes also answer with real data: the hostile
# adapter built by adapters/build.sh (tests/run.sh runs it first).
hostile=$PWD/target/adapters/hostile.wasm
if [ ! -f "$hostile" ]; then
  echo "tests/schemathesis.sh: $hostile is missing; adapters/build.sh builds it" >&2
  exit 1
fi
today=$(date -u +%F)
yesterday=$(date -u -d yesterday +%F)
cat >"$work/page.toml" <<TOML
name = "page"
version = "0.1.0"
world = "tally:billing@0.2.0"
sha256 = "$(sha256sum "$hostile" | cut -d' ' -f1)"
component = "$hostile"
[schedule]
window = "daily"
lag = "0s"
start = "${today}T00:00:00Z"
[config]
attack = "html-document"
TOML
"$tally" adapters install "$work/page.toml" --url "$base" --token "$token" >/dev/null
"$tally" export run page --from "$yesterday" --to "$today" --url "$base" --token "$token" >/dev/null
# Generated path parameters take these real values most of the time (never
# for DELETE, which would remove the installation, or revoke the operator's
# token (id 1), for every later request).
cat >"$work/schemathesis.toml" <<TOML
[dictionaries.adapters]
values = ["page"]
[dictionaries.runs]
values = [1]
[dictionaries.documents]
values = ["page.html", "table.csv"]
[parameters]
"path.name" = { dictionary = "adapters", probability = 0.7 }
"path.id" = { dictionary = "runs", probability = 0.7 }
"path.document" = { dictionary = "documents", probability = 0.7 }
[[operations]]
include-method = "DELETE"
parameters = { "path.name" = "not-installed", "path.id" = 999999 }
TOML

echo "schemathesis on $backend: $base, at most $examples examples per operation"
# From the scratch directory: schemathesis keeps a cache of crashes in the current one.
cd "$work"
"$schemathesis" --config-file schemathesis.toml run openapi.json --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" --seed 20261130 \
  --generation-database none --no-color
