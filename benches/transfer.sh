#!/usr/bin/env bash
# The node binary end to end: `add` of a MIB-MiB file (256 by default) and `get` of it from a
# `serve` on 127.0.0.1, in MB/s (10^6 bytes per second), RUNS times each, medians printed as
# one JSON line. It measures what a user of the binary sees, store writes and process start
# included, which the in-process benches leave out.
# Usage: bash benches/transfer.sh [RUNS] [MIB]   (builds --release first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
mib="${2:-256}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bitswap-rs/target}"
cargo build --release --locked -p bitswap-node >&2
bin="$CARGO_TARGET_DIR/release/bitswap-node"
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
head -c "$((mib * 1024 * 1024))" /dev/urandom >"$work/file"
bytes=$((mib * 1024 * 1024))
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
add_rates=()
get_rates=()
for run in $(seq "$runs"); do
  # add into a fresh store each time.
  seconds=$("$bin" --data-dir "$work/add-$run" add --json "$work/file" | json '["seconds"]')
  add_rates+=("$(python3 -c "print(round($bytes / $seconds / 1e6, 1))")")
  rm -rf "$work/add-$run"
  # serve from one store, get into a fresh one.
  "$bin" --data-dir "$work/server" serve --json "$work/file" >"$work/serve.json" &
  server=$!
  for _ in $(seq 600); do [ -s "$work/serve.json" ] && break; sleep 0.1; done
  address=$(json '["multiaddrs"][0]' <"$work/serve.json")
  root=$(json '["roots"][0]["cid"]' <"$work/serve.json")
  seconds=$(timeout 600 "$bin" --data-dir "$work/client-$run" get --json "$root" --peer "$address" -o "$work/out-$run" | json '["seconds"]')
  cmp "$work/file" "$work/out-$run"
  get_rates+=("$(python3 -c "print(round($bytes / $seconds / 1e6, 1))")")
  kill -TERM "$server"; wait "$server" || true; server=""
  rm -rf "$work/client-$run" "$work/out-$run" "$work/serve.json"
  echo "run $run: add ${add_rates[-1]} MB/s, get ${get_rates[-1]} MB/s" >&2
done
python3 - "${add_rates[*]}" "${get_rates[*]}" "$mib" <<'PY'
import json, statistics, sys
add = [float(x) for x in sys.argv[1].split()]
get = [float(x) for x in sys.argv[2].split()]
print(json.dumps({"file_mib": int(sys.argv[3]), "add_mb_s": add, "get_mb_s": get,
                  "add_median_mb_s": statistics.median(add), "get_median_mb_s": statistics.median(get)}))
PY
