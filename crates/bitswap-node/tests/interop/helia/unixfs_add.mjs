// Root CIDs of files imported by ipfs-unixfs-importer (the UnixFS importer of Helia) with
// kubo's `ipfs add` layouts, for the CID tests of bitswap-node: no node, no network.
//
//   node unixfs_add.mjs LAYOUT FILE...
//
// LAYOUT is `v0` (kubo's defaults: CIDv0, dag-pb leaves, 256 KiB chunks, balanced DAG of
// 174 links) or `v1-raw` (`ipfs add --cid-version 1 --raw-leaves`: the same with CIDv1 and
// raw leaves). Prints one JSON object: {"FILE": "CID", ...}. A FILE that is a directory is
// imported with everything below it (ipfs-unixfs-importer's own rule for sharding it: a HAMT
// once its links' names and CIDs pass 256 KiB).
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { MemoryBlockstore } from 'blockstore-core'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const [layout, ...files] = process.argv.slice(2)
const kubo = {
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 }),
  reduceSingleLeafToSelf: true
}
const options = {
  v0: { ...kubo, cidVersion: 0, rawLeaves: false, leafType: 'file' },
  'v1-raw': { ...kubo, cidVersion: 1, rawLeaves: true }
}[layout]
if (options == null || files.length === 0) {
  process.stderr.write('usage: node unixfs_add.mjs v0|v1-raw FILE...\n')
  process.exit(2)
}

/** The importer's input for the file or directory at `path`, named `name` and below. */
function * source (path, name) {
  if (statSync(path).isDirectory()) {
    yield { path: name }
    for (const child of readdirSync(path)) yield * source(join(path, child), `${name}/${child}`)
  } else {
    yield { path: name, content: readFileSync(path) }
  }
}

const roots = {}
for (const path of files) {
  const blockstore = new MemoryBlockstore()
  const name = basename(path)
  let root
  for await (const entry of importer(source(path, name), blockstore, options)) {
    // The top entry is the one named `name` (for a directory, it comes last).
    if (entry.path === name) root = entry.cid
  }
  roots[path] = root.toString()
}
process.stdout.write(JSON.stringify(roots) + '\n')
