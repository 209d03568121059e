//! The node's block store: the redb file of its data directory, or a bucket of an
//! S3-compatible service shared with other nodes (`--store`).

use bitswap::{Block, Blockstore, RedbBlockstore, RedbBlockstoreError};
use cid::Cid;
use ipfs_blockstore::{S3Blockstore, S3BlockstoreError};

/// Where the blocks are, as `--store` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `redb`: the data directory's redb file.
    Redb,
    /// `s3://BUCKET[/PREFIX]`: objects of a bucket.
    S3(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "redb" {
            Ok(Self::Redb)
        } else if text.starts_with("s3://") {
            Ok(Self::S3(text.to_owned()))
        } else {
            Err(format!("{text:?} is neither redb nor s3://BUCKET[/PREFIX]"))
        }
    }
}

/// The store a command works on.
#[derive(Debug)]
pub enum NodeStore {
    /// The data directory's redb file.
    Redb(RedbBlockstore),
    /// A bucket.
    S3(S3Blockstore),
}

/// Why an operation of a [`NodeStore`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeStoreError {
    /// Of the redb store.
    #[error(transparent)]
    Redb(#[from] RedbBlockstoreError),
    /// Of the S3 store.
    #[error(transparent)]
    S3(#[from] S3BlockstoreError),
}

impl NodeStoreError {
    /// Whether the stored copy of a block was found corrupt (fetching it again repairs it).
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Redb(error) => matches!(error, RedbBlockstoreError::Corrupt { .. }),
            Self::S3(error) => error.is_corrupt(),
        }
    }
}

impl NodeStore {
    /// Flushes the store and closes it.
    pub async fn close(self) -> Result<(), NodeStoreError> {
        match self {
            Self::Redb(store) => Ok(store.close().await?),
            Self::S3(store) => Ok(store.flush().await?),
        }
    }
}

impl Blockstore for NodeStore {
    type Error = NodeStoreError;

    async fn get(&self, cid: &Cid) -> Result<Option<Block>, Self::Error> {
        match self {
            Self::Redb(store) => Ok(store.get(cid).await?),
            Self::S3(store) => Ok(store.get(cid).await?),
        }
    }

    async fn has(&self, cid: &Cid) -> Result<bool, Self::Error> {
        match self {
            Self::Redb(store) => Ok(store.has(cid).await?),
            Self::S3(store) => Ok(store.has(cid).await?),
        }
    }

    async fn get_size(&self, cid: &Cid) -> Result<Option<usize>, Self::Error> {
        match self {
            Self::Redb(store) => Ok(store.get_size(cid).await?),
            Self::S3(store) => Ok(store.get_size(cid).await?),
        }
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Self::Error> {
        match self {
            Self::Redb(store) => Ok(store.put_many(blocks).await?),
            Self::S3(store) => Ok(store.put_many(blocks).await?),
        }
    }

    async fn delete(&self, cid: &Cid) -> Result<(), Self::Error> {
        match self {
            Self::Redb(store) => Ok(store.delete(cid).await?),
            Self::S3(store) => Ok(store.delete(cid).await?),
        }
    }

    async fn flush(&self) -> Result<(), Self::Error> {
        match self {
            Self::Redb(store) => Ok(store.flush().await?),
            Self::S3(store) => Ok(store.flush().await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!("redb".parse(), Ok(StoreUrl::Redb));
        assert_eq!("s3://b/p".parse(), Ok(StoreUrl::S3("s3://b/p".to_owned())));
        assert!("file:///x".parse::<StoreUrl>().is_err());
    }
}
