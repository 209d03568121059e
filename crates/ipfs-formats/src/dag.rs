//! The links of a block, whatever it holds: enough to walk any DAG of dag-pb, dag-cbor and raw
//! blocks.

use cid::Cid;
use ipfs_blockstore::{
    Block,
    multicodec::{DAG_PB, RAW},
};

use crate::{
    dag_cbor::{self, DagCborError},
    unixfs::{DagPbNode, DecodeError},
};

/// The multicodec of dag-cbor.
pub const DAG_CBOR: u64 = 0x71;

/// Why the links of a block are unknown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinksError {
    /// A dag-pb block that does not decode.
    #[error("block {cid}: {source}")]
    Decode {
        /// The block.
        cid: Cid,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// A dag-cbor block that does not decode.
    #[error("block {cid}: {source}")]
    DagCbor {
        /// The block.
        cid: Cid,
        /// Why.
        #[source]
        source: DagCborError,
    },
    /// A codec whose links this crate cannot read.
    #[error("block {cid}: codec {codec:#x} is not supported (dag-pb, dag-cbor and raw only)")]
    Codec {
        /// The block.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
}

/// The CIDs a block links to, in order: none for a raw block, the links of a dag-pb node,
/// every CID of a dag-cbor block.
pub fn links(block: &Block) -> Result<Vec<Cid>, LinksError> {
    let cid = block.cid();
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => Ok(DagPbNode::decode_bytes(block.data())
            .map_err(|source| LinksError::Decode { cid: *cid, source })?
            .links
            .into_iter()
            .map(|link| link.cid)
            .collect()),
        DAG_CBOR => dag_cbor::links(block.data())
            .map_err(|source| LinksError::DagCbor { cid: *cid, source }),
        codec => Err(LinksError::Codec { cid: *cid, codec }),
    }
}
