//! The errors of [`S3Blockstore`](super::S3Blockstore): at open, and per operation.

use std::error::Error as _;

use cid::Cid;
use object_store::client::{HttpError, HttpErrorKind};

use crate::BlockError;

/// Why an [`S3Blockstore`](super::S3Blockstore) could not be opened from a URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3OpenError {
    /// The URL is not `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    #[error("{url:?} is not s3://BUCKET[/PREFIX]")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// The client could not be configured from the URL and the environment (a bad
    /// `AWS_ENDPOINT_URL`, a missing region, ...).
    #[error("cannot configure the S3 client")]
    Config(#[source] Box<object_store::Error>),
}

/// Why an operation of an [`S3Blockstore`](super::S3Blockstore) failed.
///
/// Requests are retried with exponential backoff before any of these is returned (see
/// [`S3Config::with_retries`](super::S3Config::with_retries)), so an error means the service
/// stayed unreachable, throttling or failing for the whole retry time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3BlockstoreError {
    /// The service could not be reached: no connection, or requests cut short or timed out.
    #[error("the S3 service is unreachable")]
    Unreachable(#[source] Box<object_store::Error>),
    /// The service refused the credentials or the operation (HTTP 401 or 403).
    #[error("the S3 service denied access")]
    Denied(#[source] Box<object_store::Error>),
    /// The service kept asking to slow down (HTTP 429 or 503 `SlowDown`) through every retry.
    #[error("the S3 service is throttling requests")]
    Throttled(#[source] Box<object_store::Error>),
    /// The object of a block holds bytes that do not hash to its CID, or more than a block may
    /// hold: the stored copy is corrupt. A later put of the block writes it again.
    #[error("stored block {cid} is corrupt")]
    Corrupt {
        /// The CID asked for.
        cid: Box<Cid>,
        /// How the bytes failed the check.
        #[source]
        source: BlockError,
    },
    /// Any other error of the service or the client.
    #[error("S3 request failed")]
    Other(#[source] Box<object_store::Error>),
}

impl S3BlockstoreError {
    /// Whether the stored copy of a block was found corrupt.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }

    /// Sorts an error of `object_store` into the kinds a caller acts on.
    pub(super) fn classify(error: object_store::Error) -> Self {
        use object_store::Error;
        if matches!(
            error,
            Error::PermissionDenied { .. } | Error::Unauthenticated { .. }
        ) {
            return Self::Denied(Box::new(error));
        }
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(http) = cause.downcast_ref::<HttpError>()
                && matches!(
                    http.kind(),
                    HttpErrorKind::Connect
                        | HttpErrorKind::Request
                        | HttpErrorKind::Timeout
                        | HttpErrorKind::Interrupted
                )
            {
                return Self::Unreachable(Box::new(error));
            }
            source = cause.source();
        }
        // object_store keeps the status of a failed response in a private type; its message
        // is the one place that says it.
        if is_throttling(&error.to_string()) {
            return Self::Throttled(Box::new(error));
        }
        Self::Other(Box::new(error))
    }
}

/// Whether a failed request's message is a throttling answer of S3 (429, or 503 SlowDown).
fn is_throttling(message: &str) -> bool {
    message.contains("429 Too Many Requests")
        || message.contains("503 Service Unavailable")
        || message.contains("SlowDown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_and_throttled_are_told_apart() {
        let denied = object_store::Error::PermissionDenied {
            path: "p".into(),
            source: "403".into(),
        };
        assert!(matches!(
            S3BlockstoreError::classify(denied),
            S3BlockstoreError::Denied(_)
        ));
        let slow = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>"
                .into(),
        };
        assert!(matches!(
            S3BlockstoreError::classify(slow),
            S3BlockstoreError::Throttled(_)
        ));
        let other = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 400 Bad Request".into(),
        };
        assert!(matches!(
            S3BlockstoreError::classify(other),
            S3BlockstoreError::Other(_)
        ));
    }
}
