#!/usr/bin/env bash
# `make run`: one node on a local data directory. `cairn init` runs on first use; the daemon
# itself lands with the rest of the node issue, so for now this stops after showing the node's
# identity and says what comes next.
set -euo pipefail
cairn=$1
data_dir=$2
if [[ ! -f "$data_dir/config.toml" ]]; then
  "$cairn" init --data-dir "$data_dir"
fi
echo "node identity and listen addresses:"
"$cairn" id --data-dir "$data_dir"
cat <<MSG

Data directory: $data_dir (config, identity key and tokens, mode 0600).
The daemon is not built yet. When it is, \`make run\` will start
\`cairn daemon --data-dir $data_dir\` here in the foreground, and a second terminal will add a
file with \`cairn add --data-dir $data_dir FILE\`.
MSG
