#!/usr/bin/env bash
# Known-vulnerable dependencies: `cargo deny check advisories` and
# `cargo audit`, both against the RustSec advisory database.
#
# The database lives on GitHub (github.com/rustsec/advisory-db). Where
# GitHub answers, both tools check against today's database. Where it does
# not (CI here reaches only the package registries), they check against the
# snapshot committed in .ci/advisory-db.tar.gz and this script says, loudly,
# how old that snapshot is: advisories published after it are NOT checked.
# deny.toml's maximum-db-staleness (one year) makes the run fail once the
# snapshot is older than that.
#
#   bash .ci/advisories.sh            check (live database, else the snapshot)
#   bash .ci/advisories.sh --snapshot check against the snapshot only
#   bash .ci/advisories.sh --refresh  replace the snapshot with today's
#                                     database (needs GitHub), then check
set -euo pipefail
cd "$(dirname "$0")/.."

URL=https://github.com/rustsec/advisory-db
SNAPSHOT=.ci/advisory-db.tar.gz
SNAPSHOT_META=.ci/advisory-db.snapshot
# deny.toml: db-path = "target/advisory-dbs". cargo-deny keeps the database
# for db-urls[0] in <db-path>/advisory-db-<XxHash64 of the lowercased URL>;
# the snapshot is unpacked there so that cargo-deny finds it.
DBS=target/advisory-dbs
DB="$DBS/advisory-db-3157b0e258782691"

mode=auto
case "${1:-}" in
  "") ;;
  --snapshot) mode=snapshot ;;
  --refresh) mode=refresh ;;
  *) echo "usage: bash .ci/advisories.sh [--snapshot|--refresh]" >&2; exit 2 ;;
esac

github() { timeout 15 git ls-remote "$URL" HEAD >/dev/null 2>&1; }

if [ "$mode" = refresh ]; then
  github || { echo "advisories: $URL is not reachable; cannot refresh the snapshot" >&2; exit 1; }
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  git clone -q --depth 1 "$URL" "$tmp/db"
  git -C "$tmp/db" archive --format=tar HEAD crates rust LICENSE.txt | gzip -9n > "$SNAPSHOT"
  printf 'commit=%s\ndate=%s\n' "$(git -C "$tmp/db" rev-parse HEAD)" \
    "$(git -C "$tmp/db" show -s --format=%cI HEAD)" > "$SNAPSHOT_META"
  echo "advisories: snapshot refreshed to $(cat "$SNAPSHOT_META" | tr '\n' ' ')"
  mode=snapshot
fi

if [ "$mode" = auto ]; then
  if github; then mode=live; else mode=snapshot; fi
fi

rm -rf "$DBS"
mkdir -p "$DBS"
if [ "$mode" = live ]; then
  echo "advisories: checking against today's RustSec database ($URL)"
  cargo deny --locked check advisories
  git clone -q --depth 1 "$URL" "$DBS/audit-live"
  cargo audit --db "$DBS/audit-live" --no-fetch --deny warnings
  exit 0
fi

# Snapshot: unpack it as a git repository whose one commit carries the
# snapshot's date, and date HEAD the same, so that both tools see its real
# age rather than the time it was unpacked.
. "$SNAPSHOT_META"
mkdir -p "$DB"
tar -xzf "$SNAPSHOT" -C "$DB"
(
  cd "$DB"
  export GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date"
  export GIT_AUTHOR_NAME=rekey-ci GIT_AUTHOR_EMAIL=ci@rekey.invalid
  export GIT_COMMITTER_NAME=rekey-ci GIT_COMMITTER_EMAIL=ci@rekey.invalid
  git init -q -b main .
  git add -A
  git commit -q -m "RustSec advisory-db snapshot of $commit"
  touch -d "$date" .git/HEAD
)
age_days=$(( ( $(date +%s) - $(date -d "$date" +%s) ) / 86400 ))
cat >&2 <<EOF
WARNING: advisories: $URL is not reachable from here, so dependencies are
checked against the committed RustSec snapshot of ${date%%T*} ($age_days days
old, commit ${commit:0:12}). Advisories published since then are NOT checked.
Refresh it from a machine that reaches GitHub: bash .ci/advisories.sh --refresh
EOF
cargo deny --frozen check advisories
# cargo audit: --stale because the snapshot is as old as it is (said above).
cargo audit --db "$DB" --no-fetch --stale --deny warnings
