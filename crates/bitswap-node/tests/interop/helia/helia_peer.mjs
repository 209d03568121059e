// A throw-away Helia node for the interop tests, driven by JSON lines on stdin.
//
// Usage: node helia_peer.mjs [--raw-blocks DIR] [--add PATH]... [--no-listen]
//
// A light Helia (createHeliaLight: no routers, no gateways, no delegated routing) with a libp2p
// of TCP on 127.0.0.1 only, noise, yamux, identify, ping and bitswap (Helia speaks only
// /ipfs/bitswap/1.2.0), and a connection gater refusing anything that is not loopback. No
// bootstrap, no mDNS, no DHT, no relay, no AutoNAT, no UPnP. Blocks live in memory.
//
// With --no-listen the node listens nowhere (it only dials): peers know no address of it, so
// a peer it reached through a proxy (the benches' shaped links) cannot dial it around it.
//
// Every file of --raw-blocks DIR becomes one raw block (CIDv1, raw, sha2-256); every --add PATH
// is added as a UnixFS file with Helia's defaults (CIDv1, raw leaves, 1 MiB chunks).
//
// The first stdout line is {"peer_id", "multiaddrs" (with /p2p/), "raw": {NAME: CID},
// "added": {PATH: CID}}. Then each stdin line is a JSON command answered by one JSON line:
//   {"op": "connect", "addr": MADDR}                           -> {"ok": bool, "error"?}
//   {"op": "download", "cid": CID, "out": PATH, "timeout": S}  -> {"ok": bool, "seconds", "error"?}
//   {"op": "download-dir", "cid": CID, "out": PATH, "timeout": S}
//                                                              -> {"ok": bool, "seconds", "error"?}
// (a raw CID is written as its block's bytes, a dag-pb CID as the UnixFS file's bytes;
// `download-dir` writes a UnixFS directory, basic or HAMT-sharded, as a tree at PATH, listing
// each directory with `ls` and writing its files as `download` does, 32 at a time). On EOF
// of stdin the node stops and the process exits. Logs go to stderr.

// Node 20 lacks Promise.withResolvers, which libp2p uses: polyfill it before importing libp2p.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createWriteStream, mkdirSync, readFileSync, readdirSync } = await import('node:fs')
const { join, resolve } = await import('node:path')
const { createInterface } = await import('node:readline')
const { once } = await import('node:events')
const { createHeliaLight } = await import('helia')
const { withBitswap } = await import('@helia/bitswap')
const { withLibp2pLight } = await import('@helia/libp2p')
const { unixfs } = await import('@helia/unixfs')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@libp2p/noise')
const { yamux } = await import('@libp2p/yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const { sha256 } = await import('multiformats/hashes/sha2')

const RAW = 0x55

function parseArgs (argv) {
  const args = { rawBlocks: null, add: [], listen: true }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--raw-blocks') args.rawBlocks = resolve(argv[++i])
    else if (argv[i] === '--add') args.add.push(resolve(argv[++i]))
    else if (argv[i] === '--no-listen') args.listen = false
    else throw new Error(`unknown argument ${argv[i]}`)
  }
  return args
}

/** Whether a multiaddr is on 127.0.0.1 (or ::1). */
function isLoopback (ma) {
  const text = ma.toString()
  return text.startsWith('/ip4/127.') || text.startsWith('/ip6/::1/')
}

const args = parseArgs(process.argv.slice(2))

const helia = withBitswap(withLibp2pLight(createHeliaLight({ start: false }), {
  addresses: { listen: args.listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() },
  connectionGater: {
    denyDialMultiaddr: (ma) => !isLoopback(ma),
    denyInboundConnection: (maConn) => !isLoopback(maConn.remoteAddr)
  }
}))
await helia.start()

function answer (value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}

const raw = {}
if (args.rawBlocks != null) {
  for (const name of readdirSync(args.rawBlocks).sort()) {
    const bytes = readFileSync(join(args.rawBlocks, name))
    const cid = CID.createV1(RAW, await sha256.digest(bytes))
    await helia.blockstore.put(cid, bytes)
    raw[name] = cid.toString()
  }
}
const fs = unixfs(helia)
const added = {}
for (const path of args.add) {
  added[path] = (await fs.addBytes(readFileSync(path))).toString()
}
const peerId = helia.libp2p.peerId.toString()
answer({
  peer_id: peerId,
  multiaddrs: helia.libp2p.getMultiaddrs().map((ma) => ma.toString()),
  raw,
  added
})

async function download ({ cid: text, out, timeout }) {
  const signal = AbortSignal.timeout(1000 * (timeout ?? 60))
  await writeFile(CID.parse(text), out, signal)
}

async function downloadDir ({ cid: text, out, timeout }) {
  const signal = AbortSignal.timeout(1000 * (timeout ?? 60))
  await writeTree(CID.parse(text), out, signal)
}

/** Files of a directory written at once: one want each would make 10,000 round trips. */
const FILES_AT_ONCE = 32

/** Writes the directory `cid` (and everything below) as `out`. */
async function writeTree (cid, out, signal) {
  mkdirSync(out)
  const files = []
  for await (const entry of fs.ls(cid, { signal })) {
    const path = join(out, entry.name)
    if (entry.type === 'directory') await writeTree(entry.cid, path, signal)
    else files.push([entry.cid, path])
  }
  let next = 0
  async function worker () {
    while (next < files.length) {
      const [file, path] = files[next++]
      await writeFile(file, path, signal)
    }
  }
  await Promise.all(Array.from({ length: FILES_AT_ONCE }, worker))
}

/** Writes the file (or raw block) `cid` as `out`. */
async function writeFile (cid, out, signal) {
  const file = createWriteStream(out)
  const chunks = cid.code === RAW
    ? helia.blockstore.get(cid, { signal })
    : fs.cat(cid, { signal })
  // Helia 7's blockstore.get returns an async iterable of chunks; older ones a Uint8Array.
  const iterable = (chunks instanceof Uint8Array || chunks?.then != null)
    ? [await chunks]
    : chunks
  for await (const chunk of iterable) {
    if (!file.write(chunk)) await once(file, 'drain')
  }
  file.end()
  await once(file, 'finish')
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (line.trim() === '') continue
  const command = JSON.parse(line)
  const start = performance.now()
  try {
    if (command.op === 'connect') {
      await helia.libp2p.dial(multiaddr(command.addr), { signal: AbortSignal.timeout(30000) })
      answer({ ok: true })
    } else if (command.op === 'download') {
      await download(command)
      answer({ ok: true, seconds: (performance.now() - start) / 1000 })
    } else if (command.op === 'download-dir') {
      await downloadDir(command)
      answer({ ok: true, seconds: (performance.now() - start) / 1000 })
    } else {
      answer({ ok: false, error: `unknown op ${command.op}` })
    }
  } catch (error) {
    answer({ ok: false, seconds: (performance.now() - start) / 1000, error: String(error?.stack ?? error) })
  }
}
await helia.stop()
process.exit(0)
