#!/usr/bin/env python3
"""Draws `make bench-scale`'s three curves from its CSVs into one PNG.

usage: plot-scale.py CSV_DIR OUT.png

Panels: store size (put and get rates against blocks held, per block size), cluster size
(formation, add with R = 3 and repair time against nodes), file size (add and transfer MiB/s
against file size). A part whose CSV is missing gets a panel that says so.
"""

import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def not_run(ax, part):
    ax.text(0.5, 0.5, f"{part}: not run", ha="center", va="center")
    ax.set_axis_off()


def size_label(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def store_panel(ax, data):
    if not data:
        return not_run(ax, "store size")
    for block in sorted({int(r["block_bytes"]) for r in data}):
        mine = [r for r in data if int(r["block_bytes"]) == block]
        x = [int(r["blocks"]) for r in mine]
        label = size_label(block)
        ax.plot(x, [float(r["put_mib_per_s"]) for r in mine], "o-", label=f"put, {label} blocks")
        ax.plot(x, [float(r["get_mib_per_s"]) for r in mine], "s--", label=f"get, {label} blocks")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("blocks held")
    ax.set_ylabel("MiB/s (verified)")
    ax.set_title("store size")
    ax.legend(fontsize="small")


def cluster_panel(ax, data):
    if not data:
        return not_run(ax, "cluster size")
    x = [int(r["nodes"]) for r in data]
    for column, label, style in (
        ("formation_s", "formation", "o-"),
        ("add_r3_s", "add 16 MiB, R = 3", "s-"),
        ("repair_s", "repair after a fifth stop", "^-"),
    ):
        ax.plot(x, [float(r[column]) for r in data], style, label=label)
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds")
    ax.set_title("cluster size")
    memory = ax.twinx()
    memory.plot(x, [float(r["rss_mib_per_node"]) for r in data], "k:", label="MiB per node")
    memory.set_ylabel("MiB per node (dotted)")
    memory.set_ylim(bottom=0)
    ax.legend(fontsize="small", loc="upper left")


def files_panel(ax, data):
    if not data:
        return not_run(ax, "file size")
    x = [int(r["file_bytes"]) for r in data]
    ax.plot(x, [float(r["add_mib_per_s"]) for r in data], "o-", label="add over gRPC")
    ax.plot(x, [float(r["transfer_mib_per_s"]) for r in data], "s-", label="node-to-node transfer")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [size_label(n) for n in x])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("file size")
    ax.set_ylabel("MiB/s")
    ax.set_title("file size")
    ax.legend(fontsize="small")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    directory, out = sys.argv[1], sys.argv[2]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    store_panel(axes[0], rows(directory, "store.csv"))
    cluster_panel(axes[1], rows(directory, "cluster.csv"))
    files_panel(axes[2], rows(directory, "files.csv"))
    fig.suptitle("make bench-scale: how cost grows with the work")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"plot written to {out}")


if __name__ == "__main__":
    main()
