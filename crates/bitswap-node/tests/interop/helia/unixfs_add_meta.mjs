// The root CID of a directory tree added through @helia/unixfs (`addAll`, Helia's default
// layout: CIDv1, raw leaves, 1 MiB chunks, 1024 links) with every file's and directory's mode
// and mtime, as `add --preserve-mode --preserve-mtime` stores them: no node, no network.
//
//   node unixfs_add_meta.mjs DIR
//
// Entries are read from disk (lstat, nanosecond times) and handed to addAll parents first, in
// byte order of their names; hidden entries are added too. Prints one JSON object:
// {"root": "CID"}.
import { lstatSync, readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { unixfs } from '@helia/unixfs'
import { MemoryBlockstore } from 'blockstore-core'

const [dir] = process.argv.slice(2)
if (dir == null) {
  process.stderr.write('usage: node unixfs_add_meta.mjs DIR\n')
  process.exit(2)
}

function metadata (path) {
  const stat = lstatSync(path, { bigint: true })
  const nsecs = Number(stat.mtimeNs % 1_000_000_000n)
  return {
    stat,
    mode: Number(stat.mode & 0o7777n),
    // A fractional part of 0 is left out, as the spec asks.
    mtime: { secs: stat.mtimeNs / 1_000_000_000n, nsecs: nsecs === 0 ? undefined : nsecs }
  }
}

function * entries (path, name) {
  const { stat, mode, mtime } = metadata(path)
  if (stat.isDirectory()) {
    yield { path: name, mode, mtime }
    const children = readdirSync(path).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    for (const child of children) {
      yield * entries(join(path, child), `${name}/${child}`)
    }
  } else if (stat.isFile()) {
    yield { path: name, mode, mtime, content: readFileSync(path) }
  } else {
    throw new Error(`${path}: not a file or directory`)
  }
}

const fs = unixfs({ blockstore: new MemoryBlockstore() })
let root
for await (const entry of fs.addAll(entries(dir, basename(dir)))) {
  root = entry.cid
}
process.stdout.write(JSON.stringify({ root: root.toString() }) + '\n')
