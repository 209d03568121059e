//! The library half of `bitswap-node`: what the binary needs beside the IPFS formats (which
//! are `ipfs-formats`'s).
//!
//! - [`datadir`]: the node's data directory: its identity key and its block store.
//! - [`store`]: the block store of `--store`: the data directory's redb file or an S3 bucket.
//! - [`transport`]: transport settings (yamux windows that Helia's frames fit, QUIC streams
//!   that kubo stops reading).

pub mod datadir;
pub mod store;
pub mod transport;
