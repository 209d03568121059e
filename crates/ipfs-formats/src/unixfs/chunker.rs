//! [`Chunker`]: fixed-size chunks from a reader, as kubo's `size-N` splitter cuts them.

use std::io::{self, Read};

use bytes::Bytes;

/// Cuts a reader into chunks of exactly `size` bytes, the last one shorter (never empty).
///
/// Short reads are retried until the chunk is full or the reader ends, so chunk boundaries
/// depend only on the bytes, never on how the reader delivers them.
#[derive(Debug)]
pub struct Chunker<R> {
    reader: R,
    size: usize,
    done: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker of `size`-byte chunks (`size` > 0).
    pub fn new(reader: R, size: usize) -> Self {
        assert!(size > 0, "chunk size must not be 0");
        Self {
            reader,
            size,
            done: false,
        }
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = vec![0; self.size];
        let mut filled = 0;
        while filled < self.size {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok(Some(Bytes::from(buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most 3 bytes per read.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn chunks(data: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut chunker = Chunker::new(Trickle(data), size);
        let mut out = Vec::new();
        while let Some(chunk) = chunker.next_chunk().unwrap() {
            out.push(chunk.to_vec());
        }
        out
    }

    #[test]
    fn fixed_size_whatever_the_reads() {
        assert!(chunks(b"", 4).is_empty());
        assert_eq!(chunks(b"abcd", 4), [b"abcd".to_vec()]);
        assert_eq!(
            chunks(b"abcdefghi", 4),
            [b"abcd".to_vec(), b"efgh".to_vec(), b"i".to_vec()]
        );
    }
}
