#!/usr/bin/env bash
# Schema-driven API fuzzing: schemathesis generates requests for every
# operation of /api/v1/openapi.json and sends them to a live `rekey serve`
# (debug build, SQLite, a fresh data dir, an ephemeral loopback port).
# Checks: all of schemathesis's but positive_data_acceptance, i.e. it fails
# on any 5xx, a status code or content type the document does not list for
# the operation, a body or header that does not match the document, data
# the schema calls invalid being accepted, a request without the key that
# is not refused, and a deleted resource still answering. Not checked:
# positive_data_acceptance (schema-valid requests refused), since the
# document does not yet carry every rule the server enforces (enums, id
# patterns); turn it on when it does.
#
# The server and schemathesis run in a private network namespace that has
# only a loopback interface: generated webhook URLs, probe URLs, OAuth
# issuers and catalog endpoints then fail at once instead of reaching the
# internet. The background schedulers are off (--check-interval 0
# --refresh-interval 0).
#
# The run uses its own admin API key (`rekey admin create-key`). It must not
# lock itself out: DELETE /api/v1/api-keys/{id} (operation revoke_api_key)
# and POST /api/v1/api-keys/{id}/rotate (rotate_api_key, which with grace 0
# revokes the key) are excluded; crates/rekey-server/tests/api_keys_rotate.rs
# covers rotation's bad inputs instead. Nothing else can revoke a key or
# drop its scope (keys are immutable; there is no tenant or user API under
# /api/v1), so every other operation is fuzzed; at the end the key must
# still work.
# .ci/schemathesis_seed.py first creates real rows and hands their ids and
# the valid enum values to generation (schemathesis dictionaries).
#
# Settings (environment):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 25)
#   SCHEMATHESIS_SEED          generation seed (default fixed, for repeatable CI)
#   SCHEMATHESIS_TIME_LIMIT    hard wall-clock limit of the run in s (default 300);
#                              reaching it fails the step
#   SCHEMATHESIS_WORKERS       concurrent workers (default 1: with two, the
#                              worker threads parse Python source at once and
#                              CPython 3.11 (Debian 12's) can fail with
#                              "AST constructor recursion depth mismatch", a
#                              runtime error of the tool, not of rekey)
#   SCHEMATHESIS_CHECKS, SCHEMATHESIS_EXCLUDE_CHECKS  (default all / positive_data_acceptance)
#   SCHEMATHESIS_REPORTS       report formats (default junit; ndjson shows every request)
#   REKEY_BIN                  server binary (default: built here, target/debug/rekey)
# Reports (JUnit, server log) land in target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/env.sh

# Re-run this script inside a network namespace with only loopback.
if [ -z "${REKEY_SCHEMATHESIS_NETNS:-}" ]; then
  command -v st >/dev/null || {
    echo "schemathesis is not installed: bash .ci/run installs it (pinned) into $REKEY_CI_VENV." >&2
    exit 1
  }
  if [ -z "${REKEY_BIN:-}" ]; then
    cargo build --locked -q -p rekey-cli --bin rekey
  fi
  if [ "$(id -u)" = 0 ]; then netns=(unshare --net); else netns=(unshare --map-root-user --net); fi
  if ! "${netns[@]}" true 2>/dev/null; then
    echo "cannot create a network namespace (${netns[*]}): the fuzzed server would reach the network. Run as root or enable user namespaces." >&2
    exit 1
  fi
  REKEY_SCHEMATHESIS_NETNS=1 exec "${netns[@]}" bash "$0" "$@"
fi

ip link set lo up
bin=${REKEY_BIN:-target/debug/rekey}
out=target/schemathesis
rm -rf "$out"
mkdir -p "$out"
data=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$data"
}
trap cleanup EXIT

export REKEY_LOG=${REKEY_LOG:-warn}
key=$("$bin" admin create-key --data-dir "$data" --name schemathesis --scope admin)

"$bin" serve --data-dir "$data" --listen 127.0.0.1:0 \
  --check-interval 0 --refresh-interval 0 >"$out/server.out" 2>"$out/server.log" &
server_pid=$!
base=
for _ in $(seq 1 100); do
  base=$(sed -n 's/^rekey listening on \(http:[^ ]*\).*/\1/p' "$out/server.out" | head -n1)
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "rekey serve did not start" >&2; cat "$out/server.log" >&2; exit 1; }
echo "schemathesis against $base (server log: $out/server.log)"
python3 .ci/schemathesis_seed.py "$base" "$key" "$out/schemathesis.toml"

rc=0
timeout --kill-after=10 "${SCHEMATHESIS_TIME_LIMIT:-300}" \
  st --config-file "$out/schemathesis.toml" run "$base/api/v1/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks "${SCHEMATHESIS_CHECKS:-all}" \
  --exclude-checks "${SCHEMATHESIS_EXCLUDE_CHECKS:-positive_data_acceptance}" \
  --exclude-operation-id revoke_api_key \
  --exclude-operation-id rotate_api_key \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
  --seed "${SCHEMATHESIS_SEED:-20261201}" \
  --workers "${SCHEMATHESIS_WORKERS:-1}" \
  --request-timeout 20 \
  --generation-database none \
  --suppress-health-check all \
  --report "${SCHEMATHESIS_REPORTS:-junit}" --report-dir "$out" \
  --no-color \
  || rc=$?
# What the run left behind (how far generated requests got), and proof
# that the run's own key still works.
REKEY_BASE=$base REKEY_KEY=$key python3 - <<'PY' || rc=1
import json, os, urllib.request
base, key = os.environ["REKEY_BASE"], os.environ["REKEY_KEY"]
def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
counts = {p: len(get("/api/v1/" + p + "?limit=200" if p == "connections" else "/api/v1/" + p)["items"])
          for p in ("connections", "integrations", "webhooks", "api-keys")}
print("left behind by the run (first page):", ", ".join(f"{n} {p}" for p, n in counts.items()))
PY
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "schemathesis did not finish within ${SCHEMATHESIS_TIME_LIMIT:-300} s" >&2
fi
if grep -q -i 'panic' "$out/server.log"; then
  echo "the server log records a panic:" >&2
  grep -i -A5 'panic' "$out/server.log" >&2
  rc=1
fi
exit "$rc"
