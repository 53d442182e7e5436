#!/usr/bin/env bash
# `make run`: one node on a local data directory, in the foreground. `cairn init` runs on first
# use; Ctrl-C stops the node in order.
set -euo pipefail
cairn=$1
data_dir=$2
if [[ ! -f "$data_dir/config.toml" ]]; then
  "$cairn" init --data-dir "$data_dir"
  # A node for trying things: reachable from this machine only. Nodes that serve each other
  # come from `cairn init-cluster`, which writes their allowlists.
  sed -i 's#"/ip4/0.0.0.0/tcp/4101"#"/ip4/127.0.0.1/tcp/4101"#' "$data_dir/config.toml"
  "$cairn" config validate "$data_dir/config.toml" >/dev/null
fi
cat <<MSG
Starting a Cairn node on $data_dir (peer ID $("$cairn" id --data-dir "$data_dir" | head -n 1)).
From a second terminal:
  $cairn add --data-dir $data_dir FILE         # prints the file's CID
  $cairn cat --data-dir $data_dir CID > COPY   # reads it back, every block verified
  $cairn status --data-dir $data_dir
Ctrl-C stops the node.

MSG
exec "$cairn" daemon --data-dir "$data_dir"
