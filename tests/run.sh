#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (the Azure SDK for Python and schemathesis into .venv, the FOCUS validator
# into .venv-focus, all pinned; Chromium, Firefox ESR, playwright-core and
# puppeteer-core for the console's browser tests; oidc-provider, the OpenID
# provider of the single sign-on tests), then runs every test and schemathesis
# against a running host, then the shared integration suite and schemathesis again on
# PostgreSQL (TALLY_TEST_POSTGRES, default postgres://$USER@127.0.0.1:5432/test).
# Without a PostgreSQL server the PostgreSQL tests are left out and named,
# except in CI (CI set), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> Python test client (azure-mgmt-commerce 6.0.1) and API fuzzer (schemathesis 4.32.5) in .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt \
  -r tests/python/requirements-schemathesis.txt
export TALLY_TEST_PYTHON="$PWD/.venv/bin/python"

echo "==> FOCUS validator (focus-validator 2.2.1, Python 3.12) in .venv-focus"
# focus-validator 2.x needs Python 3.12 (the pins are resolved for it); take
# python3.12 from PATH, else the newest 3.12 that pyenv has.
python312() {
  if python3.12 -c '' 2>/dev/null; then
    echo python3.12
    return
  fi
  local version
  version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.[0-9]+$' | sort -V | tail -n 1)
  if [ -n "$version" ]; then
    echo "$(pyenv root)/versions/$version/bin/python3.12"
    return
  fi
  echo "tests/run.sh: focus-validator needs Python 3.12 (python3.12 on PATH, or pyenv's 3.12)" >&2
  return 1
}
if ! .venv-focus/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  rm -rf .venv-focus
  python=$(python312)
  "$python" -m venv .venv-focus
fi
.venv-focus/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements-focus.txt
export TALLY_FOCUS_PYTHON="$PWD/.venv-focus/bin/python"

echo "==> Browser tests: Chromium and Firefox ESR (Debian's), playwright-core and puppeteer-core (pinned, npm ci) in tests/browser"
# The console's end-to-end tests drive Debian's headless Chromium and Firefox
# ESR; a missing browser fails them, so install the missing ones here (as
# root, or through sudo), in one apt-get call.
browsers=()
[ -x /usr/bin/chromium ] || browsers+=(chromium)
[ -x /usr/bin/firefox-esr ] || browsers+=(firefox-esr)
if [ "${#browsers[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${browsers[@]}"
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "==> OpenID provider for the single sign-on tests: oidc-provider and jose (pinned, npm ci) in tests/oidc"
(cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)

echo "==> Example adapters, built from source for wasm32-wasip2"
adapters/build.sh

echo "==> PostgreSQL"
export TALLY_TEST_POSTGRES="${TALLY_TEST_POSTGRES:-postgres://$(id -un)@127.0.0.1:5432/test}"
postgres_hostport=$(sed -E 's#^[a-z]+://([^@/]*@)?([^/:]+)(:([0-9]+))?.*#\2 \4#' <<<"$TALLY_TEST_POSTGRES")
read -r postgres_host postgres_port <<<"$postgres_hostport"
if (exec 3<>"/dev/tcp/$postgres_host/${postgres_port:-5432}") 2>/dev/null; then
  postgres=yes
  echo "PostgreSQL at $TALLY_TEST_POSTGRES"
elif [ -n "${CI:-}" ]; then
  echo "tests/run.sh: CI needs PostgreSQL at $TALLY_TEST_POSTGRES; none answers" >&2
  exit 1
else
  postgres=no
  unset TALLY_TEST_POSTGRES
  echo "no PostgreSQL at $postgres_host:${postgres_port:-5432}: the PostgreSQL tests will not run"
fi

echo "==> cargo test (SQLite, and the PostgreSQL-only tests)"
if [ "$postgres" = yes ]; then
  cargo test --workspace --locked
else
  cargo test --workspace --locked -- --skip on_postgres
fi

echo "==> schemathesis: the API against its OpenAPI document (SQLite)"
tests/schemathesis.sh

# The modules of the integration tests that exercise the store, again with
# every host on PostgreSQL (the same binary, filtered by module).
postgres_suites=(access ingest usage_api azure_sdk exports cli durability webhook stored_data shutdown console tenant_documents verify statements contract_versions c_adapters retention)
if [ "$postgres" = yes ]; then
  echo "==> cargo test on PostgreSQL: ${postgres_suites[*]}"
  TALLY_TEST_BACKEND=postgres cargo test --locked -p tally --test integration -- \
    $(printf -- '%s:: ' "${postgres_suites[@]}")
  echo "==> schemathesis: the API against its OpenAPI document (PostgreSQL)"
  tests/schemathesis.sh postgres
else
  echo "NOT RUN (no PostgreSQL): tests named *on_postgres (store, replicas, migrate)," \
    "the suites ${postgres_suites[*]} and schemathesis on PostgreSQL"
fi
