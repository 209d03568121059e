//! DAGs for the file assembler's tests: crafted nodes, and feeding a DAG to an assembler in
//! the order `get` follows.

use std::collections::HashSet;

use bitswap::Block;
use bytes::Bytes;
use cid::Cid;
use ipfs_formats::{
    dag,
    unixfs::{DagPbNode, FileAssembler, Link, UnixfsData},
};
use prost::Message as _;

/// A file node (CIDv0) whose `n` links all go to `child`, which holds `child_size` bytes.
pub fn repeat(child: &Block, child_size: u64, n: usize) -> Block {
    let node = DagPbNode {
        links: vec![
            Link {
                cid: *child.cid(),
                name: String::new(),
                tsize: child.data().len() as u64,
            };
            n
        ],
        data: Some(
            UnixfsData::file(Bytes::new(), vec![child_size; n])
                .encode_to_vec()
                .into(),
        ),
    };
    Block::from_v0_data(Bytes::from(node.encode())).unwrap()
}

/// Feeds the DAG under `root` to `file` as `get` does: a block only once its parent came,
/// each once, the next one chosen by `pick` (given how many are known, it returns an index
/// among them); blocks the assembler needs again come from `get` too.
pub fn feed(
    file: &mut FileAssembler,
    root: &Block,
    get: impl Fn(&Cid) -> Block,
    mut pick: impl FnMut(usize) -> usize,
) {
    let mut seen = HashSet::from([*root.cid()]);
    let mut known = dag::links(root).unwrap();
    known.retain(|cid| seen.insert(*cid));
    while !known.is_empty() {
        let cid = known.swap_remove(pick(known.len()) % known.len());
        let block = get(&cid);
        file.add(&block).unwrap();
        for link in dag::links(&block).unwrap() {
            if seen.insert(link) {
                known.push(link);
            }
        }
        loop {
            let again = file.take_again();
            if again.is_empty() {
                break;
            }
            for cid in again {
                file.add(&get(&cid)).unwrap();
            }
        }
    }
}
