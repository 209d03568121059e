//! The library half of `bitswap-node`: what the binary does with blocks on this machine.
//!
//! - [`unixfs`]: import files and directories with the same CIDs as kubo's `ipfs add`
//!   (CIDv0 and dag-pb leaves by default, or CIDv1 with raw leaves), and export them back.
//! - [`car`]: CARv1 export and import of a DAG.
//! - [`dag`]: the links of a block, for walks over any DAG of dag-pb and raw blocks.
//! - [`datadir`]: the node's data directory: its identity key and its block store.
//! - [`transport`]: transport settings (yamux windows that Helia's frames fit, QUIC streams
//!   that kubo stops reading).

pub mod car;
pub mod dag;
pub mod datadir;
pub mod transport;
pub mod unixfs;
