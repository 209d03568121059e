//! The CARv1 header: a dag-cbor map `{"roots": [CID...], "version": 1}`, written and read by
//! hand (the only CBOR a CARv1 file holds outside its blocks).

use cid::Cid;

use crate::dag_cbor::{self, ARRAY, BYTES, CID_TAG, MAP, TAG, TEXT, UINT};

/// Most roots read from a header (a header is at most 1 MiB anyway).
const MAX_ROOTS: u64 = 1 << 14;

/// Why a header is not a CARv1 header.
#[derive(Debug, thiserror::Error)]
#[error("invalid CARv1 header: {0}")]
pub struct HeaderError(pub(crate) String);

fn error(what: impl Into<String>) -> HeaderError {
    HeaderError(what.into())
}

/// Writes a CBOR head: major type and argument, in the shortest form (as dag-cbor requires).
fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..24 => out.push(major | value as u8),
        24..0x100 => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..0x1_0000 => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..0x1_0000_0000 => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// The dag-cbor bytes of the header with `roots` (keys in dag-cbor order: shorter first).
pub fn encode(roots: &[Cid]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, MAP, 2);
    head(&mut out, TEXT, 5);
    out.extend_from_slice(b"roots");
    head(&mut out, ARRAY, roots.len() as u64);
    for root in roots {
        let bytes = root.to_bytes();
        head(&mut out, TAG, CID_TAG);
        head(&mut out, BYTES, bytes.len() as u64 + 1);
        // The multibase prefix of binary CIDs in dag-cbor.
        out.push(0);
        out.extend_from_slice(&bytes);
    }
    head(&mut out, TEXT, 7);
    out.extend_from_slice(b"version");
    head(&mut out, UINT, 1);
    out
}

/// Reads CBOR items from a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        dag_cbor::take(&mut self.0, n).map_err(|e| error(e.to_string()))
    }

    /// A head: major type and argument (indefinite lengths are refused).
    fn head(&mut self) -> Result<(u8, u64), HeaderError> {
        dag_cbor::take_head(&mut self.0).map_err(|e| error(e.to_string()))
    }

    fn expect(&mut self, major: u8, what: &str) -> Result<u64, HeaderError> {
        match self.head()? {
            (found, value) if found == major => Ok(value),
            _ => Err(error(format!("expected {what}"))),
        }
    }

    fn bytes(&mut self, major: u8, what: &str) -> Result<&'a [u8], HeaderError> {
        let len = self.expect(major, what)?;
        let len = usize::try_from(len).map_err(|_| error("length"))?;
        self.take(len)
    }
}

/// The roots of a CARv1 header; any version but 1 is refused.
pub fn decode(bytes: &[u8]) -> Result<Vec<Cid>, HeaderError> {
    let mut reader = Reader(bytes);
    let entries = reader.expect(MAP, "a map")?;
    let (mut roots, mut version) = (None, None);
    for _ in 0..entries {
        match reader.bytes(TEXT, "a text key")? {
            b"roots" => {
                let count = reader.expect(ARRAY, "an array of roots")?;
                if count > MAX_ROOTS {
                    return Err(error("too many roots"));
                }
                let mut list = Vec::new();
                for _ in 0..count {
                    if reader.expect(TAG, "a CID")? != CID_TAG {
                        return Err(error("root without the CID tag"));
                    }
                    let cid = match reader.bytes(BYTES, "CID bytes")? {
                        [0, cid @ ..] => Cid::try_from(cid).map_err(|e| error(e.to_string()))?,
                        _ => return Err(error("CID without its 0x00 prefix")),
                    };
                    list.push(cid);
                }
                roots = Some(list);
            }
            b"version" => version = Some(reader.expect(UINT, "an integer version")?),
            _ => return Err(error("unknown key")),
        }
    }
    match version {
        Some(1) => {}
        Some(version) => return Err(error(format!("version {version} (only 1 is supported)"))),
        None => return Err(error("no version")),
    }
    if !reader.0.is_empty() {
        return Err(error("bytes after the header map"));
    }
    roots.ok_or_else(|| error("no roots"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let cid: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        let bytes = encode(&[cid]);
        // {"roots": [42(h'00' + CID)], "version": 1}
        assert_eq!(&bytes[..8], b"\xa2\x65roots\x81");
        assert_eq!(&bytes[8..12], [0xd8, 0x2a, 0x58, 35]);
        assert_eq!(&bytes[bytes.len() - 9..], b"\x67version\x01");
        assert_eq!(decode(&bytes).unwrap(), [cid]);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        // The CARv2 pragma: {"version": 2}.
        assert!(decode(b"\xa1\x67version\x02").is_err());
        assert!(decode(b"").is_err());
        assert!(decode(b"\xa2\x65roots\x80").is_err());
        assert!(
            decode(b"\xa2\x65roots\x80\x67version\x01")
                .unwrap()
                .is_empty()
        );
    }
}
