#!/usr/bin/env bash
# .ci/contract.sh: the API contract and the deployment artefacts, checked by
# the tools real clients and reviewers use. Called by .ci/run; runs on its
# own from the repository root too (bash .ci/contract.sh).
#
#   1 redocly      Redocly CLI `lint` (recommended rules, .ci/redocly.yaml)
#                  on the OpenAPI document omnid serves
#   2 schemathesis `--checks all`, 100 examples per operation, against a real
#                  omnid on 127.0.0.1 with a free port: auth off, then auth
#                  on (a tokens file, sent as a bearer token)
#   3 checkov      packaging/k8s and packaging/Dockerfile: 0 failed checks
#                  (a skip carries its reason in a comment beside it)
#
# Tools are pinned and installed once into $OMNI_CI_CACHE (default
# ~/.cache/omni-ci): each Python tool in a venv of its own (their
# dependencies disagree), Redocly from npm. Any finding fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SCHEMATHESIS_VERSION=4.32.5
CHECKOV_VERSION=3.3.30
REDOCLY_VERSION=2.77.0
CACHE=${OMNI_CI_CACHE:-$HOME/.cache/omni-ci}
WORK=$(mktemp -d /tmp/omni-contract.XXXXXX)
# start_omnid runs in a command substitution (a subshell), so the pids it
# starts are kept in a file, not in a variable of this shell.
cleanup() {
  if [ -f "$WORK/pids" ]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$WORK/pids"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf -- '--- %s\n' "$*"; }

# ---- tools ------------------------------------------------------------------
# venv TOOL VERSION: a venv with TOOL==VERSION, made once.
venv() {
  local dir=$CACHE/$1-$2
  if [ ! -x "$dir/bin/$1" ]; then
    python3 -m venv "$dir" 2>/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$dir"
    }
    "$dir/bin/pip" install -q --disable-pip-version-check "$1==$2" >&2
  fi
  echo "$dir/bin/$1"
}
ST=$(venv schemathesis "$SCHEMATHESIS_VERSION")
CHECKOV=$(venv checkov "$CHECKOV_VERSION")
REDOCLY=$CACHE/redocly-$REDOCLY_VERSION/node_modules/.bin/redocly
if [ ! -x "$REDOCLY" ]; then
  command -v npm >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  }
  npm install --silent --no-audit --no-fund --prefix "$CACHE/redocly-$REDOCLY_VERSION" "@redocly/cli@$REDOCLY_VERSION"
fi

# ---- a real omnid -------------------------------------------------------------
cargo build -q --locked -p omni-supervisor --bin omnid
OMNID=$REPO/target/debug/omnid

# start_omnid NAME [ENV=VALUE...]: starts omnid on a free port of 127.0.0.1
# with the built-in defaults plus the given environment (and a policy store
# of its own in $WORK, not the built-in file in the checkout); prints its URL.
start_omnid() {
  local name=$1 log=$WORK/$1.log i addr=
  shift
  env OMNID_STORE_PATH="$WORK/$name-store.db" "$@" "$OMNID" --listen 127.0.0.1:0 >"$log" 2>&1 &
  echo "$!" >>"$WORK/pids"
  for i in $(seq 1 300); do
    addr=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; echo "contract: omnid ($name) did not start" >&2; return 1; }
  echo "http://$addr"
}

# ---- 1. Redocly lint ----------------------------------------------------------
say "redocly lint (recommended rules, .ci/redocly.yaml)"
URL=$(start_omnid open)
curl -fsS "$URL/api/openapi.json" -o "$WORK/openapi.json"
# The banner about the Node.js version goes to stderr; findings and the
# verdict are what matter.
rc=0
"$REDOCLY" lint --config .ci/redocly.yaml --format stylish "$WORK/openapi.json" \
  >"$WORK/redocly.txt" 2>&1 || rc=$?
grep -v '[║╔╚]' "$WORK/redocly.txt" | grep -v '^[[:space:]]*$' || true
[ "$rc" = 0 ] || { echo "contract: redocly lint found problems" >&2; exit 1; }

# ---- 2. schemathesis ------------------------------------------------------------
# run_schemathesis LABEL URL [ARGS...]: every check, 100 examples per
# operation, a fixed seed (a failure reproduces), bounded in time.
run_schemathesis() {
  local label=$1 url=$2
  shift 2
  say "schemathesis --checks all, 100 examples per operation ($label)"
  # From $WORK: schemathesis keeps a cache (.schemathesis/) in its working
  # directory, which does not belong in the checkout.
  (cd "$WORK" && SCHEMATHESIS_HOOKS=$REPO/.ci/schemathesis_hooks.py timeout 600 \
    "$ST" --config-file "$REPO/.ci/schemathesis.toml" run "$url/api/openapi.json" \
    --checks all --max-examples 100 --seed 19 --no-color --workers 2 \
    "$@") >"$WORK/st-$label.txt" 2>&1 || {
    cat "$WORK/st-$label.txt"
    echo "contract: schemathesis found problems ($label)" >&2
    return 1
  }
  sed -n '/= SUMMARY =/,$p' "$WORK/st-$label.txt"
}
run_schemathesis "auth off" "$URL"

# Auth on: one tenant, its token as a bearer token on every request.
TOKEN=contract-$RANDOM$RANDOM-0123456789abcdef
printf '%s' "$TOKEN" | "$OMNID" --hash-token contract >"$WORK/tokens"
AUTH_URL=$(start_omnid auth OMNID_AUTH_ENABLED=true OMNID_AUTH_TOKENS_FILE="$WORK/tokens")
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"code":"INTENT: x\n"}' "$AUTH_URL/api/validate")
[ "$code" = 401 ] || { echo "contract: auth is not on ($code without a token)" >&2; exit 1; }
run_schemathesis "auth on" "$AUTH_URL" -H "Authorization: Bearer $TOKEN"

# ---- 3. checkov -----------------------------------------------------------------
say "checkov on packaging/k8s and packaging/Dockerfile"
# --skip-download: no network; skips are the `checkov:skip=ID: reason`
# comments in the files themselves.
"$CHECKOV" --skip-download --quiet --compact --framework kubernetes -d packaging/k8s
"$CHECKOV" --skip-download --quiet --compact --framework dockerfile -f packaging/Dockerfile
# A skip without a reason is a finding too: Kubernetes skips are annotations
# `checkov.io/skipN: ID=reason`, Dockerfile ones `# checkov:skip=ID: reason`.
if grep -rnE 'checkov\.io/skip[0-9]*:[[:space:]]*[A-Z0-9_]+[[:space:]]*=?[[:space:]]*$|checkov:skip=[A-Z0-9_]+[[:space:]]*:?[[:space:]]*$' \
     packaging/k8s packaging/Dockerfile; then
  echo "contract: a checkov skip without its reason" >&2
  exit 1
fi
echo "contract: redocly, schemathesis (auth off and on) and checkov passed"
