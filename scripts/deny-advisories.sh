#!/usr/bin/env bash
# `cargo deny check advisories` against the live RustSec database when it can be fetched, and
# against a snapshot otherwise; says which one it used (commit and date), since a snapshot ages.
# The snapshot is ../shared/advisory-db when this checkout has it, else the copy in
# .ci/advisory-db (ADVISORY_SNAPSHOT names another tarball; its commit and date then come from
# ADVISORY_SNAPSHOT_COMMIT and ADVISORY_SNAPSHOT_DATE).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo=${CARGO:-cargo}
# cargo-deny keeps each database in a folder named after its URL; this is the default URL's.
db_folder=advisory-db-3157b0e258782691
db_url=https://github.com/rustsec/advisory-db

if timeout 60 "$cargo" deny fetch db >/dev/null 2>&1; then
  live="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/$db_folder"
  echo "advisories: the live RustSec database, commit $(git -C "$live" log -1 --format='%H, %cs')"
  exec "$cargo" deny check advisories
fi

if [[ -n "${ADVISORY_SNAPSHOT:-}" ]]; then
  tarball=$ADVISORY_SNAPSHOT
  commit=${ADVISORY_SNAPSHOT_COMMIT:-unknown}
  date=${ADVISORY_SNAPSHOT_DATE:-unknown}
elif [[ -f ../shared/advisory-db/rustsec-advisory-db.tar.gz ]]; then
  tarball=../shared/advisory-db/rustsec-advisory-db.tar.gz
  readme=../shared/advisory-db/README.md
  commit=$(grep -o '[0-9a-f]\{40\}' "$readme" | head -1 || echo unknown)
  date=$(grep -o 'committed [0-9-]*' "$readme" | head -1 | cut -d' ' -f2 || echo unknown)
else
  tarball=.ci/advisory-db/rustsec-advisory-db.tar.gz
  commit=$(sed -n 's/^commit=//p' .ci/advisory-db/SNAPSHOT)
  date=$(sed -n 's/^date=//p' .ci/advisory-db/SNAPSHOT)
fi

base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
db="$base/$db_folder"
mkdir -p "$db"
tar -xzf "$tarball" -C "$db"
# cargo-deny reads the database through git.
git -C "$db" init -q
git -C "$db" add -A
git -C "$db" -c user.name=snapshot -c user.email=snapshot@localhost commit -qm snapshot
# deny.toml with the database pointed at the snapshot.
awk -v path="$base" -v url="$db_url" '
  { print }
  /^\[advisories\]/ { print "db-path = \"" path "\""; print "db-urls = [\"" url "\"]" }
' deny.toml >"$base/deny.toml"
echo "advisories: the RustSec snapshot at commit $commit, $date (the live database is unreachable from here)"
"$cargo" deny --offline --config "$base/deny.toml" check advisories
