//! The on-disk record format of the relay WAL (all integers little endian):
//!
//! ```text
//! magic u32 | payload_len u32 | crc32c u32 (over record_seq ‖ payload) | record_seq u64 | payload
//! payload = count u32, then per entry: supplier_len u16 | supplier | seq u64 | value_len u32 | value
//! ```
//!
//! `value` is the relay log's [`super::super::tables::LogValue`] encoding, `seq` the entry's per-supplier
//! sequence (its id). One record holds one group commit (a readiness probe's may hold no relay). Parsing is bounds-checked and never panics: anything
//! that is not a complete record with a matching checksum is [`Invalid`].

use crate::StorageError;

/// Marks the start of a record ("RWAL"); never 0, so zero-filled space is never a record.
pub(crate) const MAGIC: u32 = 0x4c41_5752;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 20;
/// Largest payload a record can carry (its length field is a u32).
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// One relay of a record: supplier address, per-supplier sequence and encoded log value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub supplier: String,
    pub seq: u64,
    pub value: Vec<u8>,
}

/// Encoded size of one entry inside a payload.
pub(crate) fn entry_len(supplier: &str, value: &[u8]) -> usize {
    2 + supplier.len() + 8 + 4 + value.len()
}

/// Checks that one entry is representable (supplier ≤ 65535 bytes, value < 4 GiB).
pub(crate) fn check_entry(supplier: &str, value: &[u8]) -> Result<(), StorageError> {
    if u16::try_from(supplier.len()).is_err() {
        return Err(StorageError::Backend("supplier address longer than 65535 bytes".into()));
    }
    if u32::try_from(value.len()).is_err() {
        return Err(StorageError::Backend("relay log value longer than 4 GiB".into()));
    }
    Ok(())
}

/// Builds records into a reusable buffer.
#[derive(Default)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
    count: u32,
}

impl Encoder {
    /// Starts a record (clears the buffer).
    pub fn begin(&mut self, payload_hint: usize) {
        self.buf.clear();
        self.buf.reserve(HEADER_LEN + 4 + payload_hint);
        self.buf.resize(HEADER_LEN + 4, 0);
        self.count = 0;
    }

    /// Appends one entry. The caller checked it with [`check_entry`]; an unrepresentable one is an error here.
    pub fn push(&mut self, supplier: &str, seq: u64, value: &[u8]) -> Result<(), StorageError> {
        check_entry(supplier, value)?;
        let (slen, vlen) = (supplier.len() as u16, value.len() as u32);
        self.buf.extend_from_slice(&slen.to_le_bytes());
        self.buf.extend_from_slice(supplier.as_bytes());
        self.buf.extend_from_slice(&seq.to_le_bytes());
        self.buf.extend_from_slice(&vlen.to_le_bytes());
        self.buf.extend_from_slice(value);
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| StorageError::Backend("too many relays in one WAL record".into()))?;
        Ok(())
    }

    /// Seals the record as `record_seq` and returns its bytes.
    pub fn finish(&mut self, record_seq: u64) -> Result<&[u8], StorageError> {
        let payload_len = self.buf.len() - HEADER_LEN;
        let payload_len = u32::try_from(payload_len)
            .map_err(|_| StorageError::Backend("relay WAL record larger than 4 GiB".into()))?;
        self.buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&self.count.to_le_bytes());
        let seq = record_seq.to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&seq), &self.buf[HEADER_LEN..]);
        self.buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        self.buf[12..20].copy_from_slice(&seq);
        Ok(&self.buf)
    }
}

/// Encodes one record (tests; the WAL thread uses an [`Encoder`]).
#[cfg(test)]
pub(crate) fn encode(record_seq: u64, entries: &[Entry]) -> Result<Vec<u8>, StorageError> {
    let mut enc = Encoder::default();
    enc.begin(entries.iter().map(|e| entry_len(&e.supplier, &e.value)).sum());
    for e in entries {
        enc.push(&e.supplier, e.seq, &e.value)?;
    }
    Ok(enc.finish(record_seq)?.to_vec())
}

/// Why bytes at some offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Zero bytes where a header should start: never-written space (the normal end of a segment's records).
    Zero,
    /// Fewer bytes left than a header or the announced payload.
    Truncated,
    /// Not a record start.
    BadMagic,
    /// Checksum mismatch (torn or corrupted write).
    BadChecksum,
    /// Checksum matches but the payload does not decode (should not happen; treated like corruption).
    BadPayload,
}

impl Invalid {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Zero => "zero-filled space",
            Self::Truncated => "truncated record",
            Self::BadMagic => "bad magic",
            Self::BadChecksum => "checksum mismatch",
            Self::BadPayload => "undecodable payload",
        }
    }
}

/// A record parsed from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub entries: Vec<Entry>,
    /// Encoded length (header included).
    pub len: usize,
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses the record starting at `buf[0]`.
pub(crate) fn parse(buf: &[u8]) -> Result<Record, Invalid> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Err(if buf.iter().all(|b| *b == 0) {
            Invalid::Zero
        } else {
            Invalid::Truncated
        });
    };
    let magic = le_u32(header, 0).ok_or(Invalid::Truncated)?;
    if magic != MAGIC {
        return Err(if header.iter().all(|b| *b == 0) {
            Invalid::Zero
        } else {
            Invalid::BadMagic
        });
    }
    let payload_len = le_u32(header, 4).ok_or(Invalid::Truncated)? as usize;
    let crc = le_u32(header, 8).ok_or(Invalid::Truncated)?;
    let seq = le_u64(header, 12).ok_or(Invalid::Truncated)?;
    let len = HEADER_LEN.checked_add(payload_len).ok_or(Invalid::Truncated)?;
    let payload = buf.get(HEADER_LEN..len).ok_or(Invalid::Truncated)?;
    if crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload) != crc {
        return Err(Invalid::BadChecksum);
    }
    let entries = decode_payload(payload).ok_or(Invalid::BadPayload)?;
    Ok(Record { seq, entries, len })
}

/// The length (header included) that the record starting at `buf[0]` claims, if its magic is right and that
/// length fits in `buf`: where the next record starts when this one is corrupt but its header is not (a
/// checksum mismatch, an undecodable payload).
pub(crate) fn claimed_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..HEADER_LEN)?;
    if le_u32(header, 0)? != MAGIC {
        return None;
    }
    let len = HEADER_LEN.checked_add(le_u32(header, 4)? as usize)?;
    (len <= buf.len()).then_some(len)
}

fn decode_payload(p: &[u8]) -> Option<Vec<Entry>> {
    let count = le_u32(p, 0)? as usize;
    let mut at = 4;
    // Each entry takes at least 14 bytes, so a count larger than that is corrupt (and must not allocate).
    let mut entries = Vec::with_capacity(count.min(p.len() / 14));
    for _ in 0..count {
        let slen = le_u16(p, at)? as usize;
        at += 2;
        let supplier = String::from_utf8(p.get(at..at + slen)?.to_vec()).ok()?;
        at += slen;
        let seq = le_u64(p, at)?;
        at += 8;
        let vlen = le_u32(p, at)? as usize;
        at += 4;
        let value = p.get(at..at.checked_add(vlen)?)?.to_vec();
        at += vlen;
        entries.push(Entry { supplier, seq, value });
    }
    (at == p.len()).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                supplier: "pokt1a".into(),
                seq: 7,
                value: b"one".to_vec(),
            },
            Entry {
                supplier: "pokt1b".into(),
                seq: 1,
                value: vec![0xab; 1500],
            },
        ]
    }

    #[test]
    fn round_trip_and_golden_header() {
        let enc = encode(42, &entries()).unwrap();
        assert_eq!(&enc[0..4], b"RWAL");
        assert_eq!(
            u32::from_le_bytes(enc[4..8].try_into().unwrap()) as usize,
            enc.len() - HEADER_LEN
        );
        assert_eq!(u64::from_le_bytes(enc[12..20].try_into().unwrap()), 42);
        assert_eq!(&enc[20..24], &2u32.to_le_bytes());
        let rec = parse(&enc).unwrap();
        assert_eq!((rec.seq, rec.len, rec.entries), (42, enc.len(), entries()));
        // Trailing bytes after a record are not part of it.
        let mut more = enc.clone();
        more.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(&more).unwrap().len, enc.len());
    }

    #[test]
    fn invalid_inputs() {
        let enc = encode(1, &entries()).unwrap();
        assert_eq!(parse(&[0; 64]), Err(Invalid::Zero));
        assert_eq!(parse(&[0; 3]), Err(Invalid::Zero));
        assert_eq!(parse(&enc[..enc.len() - 1]), Err(Invalid::Truncated));
        assert_eq!(parse(&enc[..10]), Err(Invalid::Truncated));
        let mut flipped = enc.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(parse(&flipped), Err(Invalid::BadChecksum));
        let mut seq = enc.clone();
        seq[12] ^= 1;
        assert_eq!(
            parse(&seq),
            Err(Invalid::BadChecksum),
            "the sequence is covered by the checksum"
        );
        let mut magic = enc;
        magic[0] ^= 1;
        assert_eq!(parse(&magic), Err(Invalid::BadMagic));
    }

    #[test]
    fn oversized_supplier_is_refused() {
        let long = "x".repeat(70_000);
        assert!(check_entry(&long, b"v").is_err());
        let mut enc = Encoder::default();
        enc.begin(0);
        assert!(enc.push(&long, 1, b"v").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse(&buf);
        }

        #[test]
        fn any_truncation_is_rejected(cut in 1usize..64) {
            let enc = encode(9, &entries()).unwrap();
            let cut = cut.min(enc.len());
            prop_assert!(parse(&enc[..enc.len() - cut]).is_err());
        }
    }
}
