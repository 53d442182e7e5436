#!/usr/bin/env bash
# `make run`: start one node on a local data directory. Until the daemon lands (the node issue),
# this checks the embedded default config for that directory and says what `make run` will do.
set -euo pipefail
cairn=$1
data_dir=$2
mkdir -p "$data_dir"
export CAIRN_DATA_DIR="$data_dir"
"$cairn" config validate
cat <<MSG

cairn $("$cairn" --version | cut -d' ' -f2) built; data directory: $data_dir
The default configuration for this directory is valid (see it with: $cairn config show).

The daemon itself is not built yet. When it is, \`make run\` will:
  1. run \`cairn init --data-dir $data_dir\` on first use (identity key, admin tokens, config),
  2. start \`cairn daemon --data-dir $data_dir\` in the foreground,
and a second terminal will add a file with \`cairn add --data-dir $data_dir FILE\`.
MSG
