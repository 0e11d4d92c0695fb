//! Go `encoding/gob` of the compact closest proof, the bytes of `MsgSubmitProof.proof` (§5.3).
//!
//! The encoder writes what a fresh Go `gob.Encoder` writes for one `SparseCompactMerkleClosestProof`: the three
//! type definitions (ids 65–67, a constant 287-byte prefix) then the value. The decoder accepts any
//! self-consistent stream: it parses the type definitions it finds, matches struct fields by name as Go does,
//! skips unknown fields, and never trusts a length beyond the bytes present (no panics, no oversized
//! allocations). It refuses what Go's `gob.Decoder` refuses before a value: a definition of an id below 64 or of
//! an id already defined, and bytes left in a definition's message; bytes after the value are never read. The §5.3 limits are enforced when decompacting (`smst::ClosestProof::decompact`).

/// `SparseCompactMerkleClosestProof` (smt v0.14.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseCompactMerkleClosestProof {
    /// The proof path.
    pub path: Vec<u8>,
    /// Each flipped bit as minimal big-endian bytes.
    pub flipped_bits: Vec<Vec<u8>>,
    /// Depth as minimal big-endian bytes.
    pub depth: Vec<u8>,
    /// Path of the closest leaf.
    pub closest_path: Vec<u8>,
    /// Stored value of the closest leaf (`value ‖ weight ‖ count`).
    pub closest_value_hash: Vec<u8>,
    /// The compacted sibling proof.
    pub closest_proof: Option<SparseCompactMerkleProof>,
}

/// `SparseCompactMerkleProof` (smt v0.14.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseCompactMerkleProof {
    /// Non-placeholder side nodes, deepest first.
    pub side_nodes: Vec<Vec<u8>>,
    /// Always empty for closest proofs.
    pub non_membership_leaf_data: Vec<u8>,
    /// Bit i set ⇔ side node i was the placeholder.
    pub bit_mask: Vec<u8>,
    /// Number of side nodes before compaction.
    pub num_side_nodes: i64,
    /// Encoding of the deepest sibling node.
    pub sibling_data: Vec<u8>,
}

/// Why gob bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GobError {
    /// The stream ended inside a value.
    #[error("gob stream truncated")]
    Truncated,
    /// An unsigned integer is not in gob's encoding.
    #[error("gob integer is malformed")]
    BadInteger,
    /// A type definition is malformed or unsupported.
    #[error("gob type definition invalid: {0}")]
    BadType(&'static str),
    /// A field has a type that does not match the Go struct.
    #[error("gob field `{0}` has an unexpected type")]
    FieldType(String),
    /// No value message followed the type definitions.
    #[error("gob stream carries no value")]
    NoValue,
    /// Types nest deeper than any proof needs.
    #[error("gob types nest too deeply")]
    TooDeep,
}

/// The three type definitions a fresh Go encoder emits first (287 bytes, §5.3).
const TYPE_PREFIX_HEX: &str = "ff88ff810301011f537061727365436f6d706163744d65726b6c65436c6f7365737450726f6f6601ff82000106010450617468010a00010b466c69707065644269747301ff840001054465707468010a00010b436c6f7365737450617468010a000110436c6f7365737456616c756548617368010a00010c436c6f7365737450726f6f6601ff8600000017ff83020101095b5d5b5d75696e743801ff8400010a00007cff8503010118537061727365436f6d706163744d65726b6c6550726f6f6601ff860001050109536964654e6f64657301ff840001154e6f6e4d656d626572736869704c65616644617461010a0001074269744d61736b010a00010c4e756d536964654e6f646573010400010b5369626c696e6744617461010a000000";

const BYTES_ID: i64 = 5;
/// Go's `firstUserId`: ids below it are gob's own; a stream may not define them.
const FIRST_USER_ID: i64 = 64;
const INT_ID: i64 = 2;

fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
        return;
    }
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    out.push((256 - (8 - first)) as u8);
    out.extend_from_slice(&bytes[first..]);
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    let u = if v < 0 { ((!v as u64) << 1) | 1 } else { (v as u64) << 1 };
    put_uint(out, u);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Writes struct fields in order, omitting zero values, with gob's field-number deltas.
struct FieldWriter<'a> {
    out: &'a mut Vec<u8>,
    prev: i64,
}

impl FieldWriter<'_> {
    fn start(&mut self, index: i64) {
        put_uint(self.out, (index - self.prev) as u64);
        self.prev = index;
    }
    fn bytes(&mut self, index: i64, b: &[u8]) {
        if !b.is_empty() {
            self.start(index);
            put_bytes(self.out, b);
        }
    }
    fn byte_slices(&mut self, index: i64, list: &[Vec<u8>]) {
        if !list.is_empty() {
            self.start(index);
            put_uint(self.out, list.len() as u64);
            for b in list {
                put_bytes(self.out, b);
            }
        }
    }
    fn int(&mut self, index: i64, v: i64) {
        if v != 0 {
            self.start(index);
            put_int(self.out, v);
        }
    }
    fn end(self) {
        self.out.push(0);
    }
}

/// Encodes a proof as a fresh Go gob encoder would (type definitions, then the value).
pub fn encode_closest_proof(proof: &SparseCompactMerkleClosestProof) -> Vec<u8> {
    let mut payload = Vec::new();
    put_int(&mut payload, 65);
    let mut w = FieldWriter {
        out: &mut payload,
        prev: -1,
    };
    w.bytes(0, &proof.path);
    w.byte_slices(1, &proof.flipped_bits);
    w.bytes(2, &proof.depth);
    w.bytes(3, &proof.closest_path);
    w.bytes(4, &proof.closest_value_hash);
    if let Some(inner) = &proof.closest_proof {
        w.start(5);
        let mut n = FieldWriter { out: w.out, prev: -1 };
        n.byte_slices(0, &inner.side_nodes);
        n.bytes(1, &inner.non_membership_leaf_data);
        n.bytes(2, &inner.bit_mask);
        n.int(3, inner.num_side_nodes);
        n.bytes(4, &inner.sibling_data);
        n.end();
    }
    w.end();
    let mut out = hex::decode(TYPE_PREFIX_HEX).unwrap_or_default();
    put_uint(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn byte(&mut self) -> Result<u8, GobError> {
        let b = *self.buf.get(self.pos).ok_or(GobError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], GobError> {
        if n > self.remaining() {
            return Err(GobError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn uint(&mut self) -> Result<u64, GobError> {
        let b = self.byte()?;
        if b < 128 {
            return Ok(u64::from(b));
        }
        let n = 256 - usize::from(b);
        if n > 8 {
            return Err(GobError::BadInteger);
        }
        Ok(self.take(n)?.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
    }
    fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 != 0 {
            !((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }
    fn len(&mut self) -> Result<usize, GobError> {
        let n = self.uint()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.remaining())
            .ok_or(GobError::Truncated)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, GobError> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
    /// Reads struct fields until the terminating 0, calling `f(field_number, reader)` for each.
    fn fields(&mut self, mut f: impl FnMut(i64, &mut Self) -> Result<(), GobError>) -> Result<(), GobError> {
        let mut field: i64 = -1;
        loop {
            let delta = self.uint()?;
            if delta == 0 {
                return Ok(());
            }
            field = field
                .checked_add(i64::try_from(delta).map_err(|_| GobError::BadInteger)?)
                .ok_or(GobError::BadInteger)?;
            f(field, self)?;
        }
    }
}

#[derive(Debug, Clone)]
enum TypeDef {
    Struct(Vec<(String, i64)>),
    Slice(i64),
    Array(i64),
    Map(i64, i64),
}

/// Parses the `CommonType` {Name, Id} struct; returns the id.
fn common_type(r: &mut Reader<'_>) -> Result<i64, GobError> {
    let mut id = 0;
    r.fields(|f, r| {
        match f {
            0 => drop(r.bytes()?),
            1 => id = r.int()?,
            _ => return Err(GobError::BadType("CommonType field")),
        }
        Ok(())
    })?;
    Ok(id)
}

fn wire_type(r: &mut Reader<'_>) -> Result<(i64, TypeDef), GobError> {
    let mut result = None;
    r.fields(|f, r| {
        let (mut id, mut elem, mut key, mut fields) = (0, 0, 0, Vec::new());
        let kind = f;
        r.fields(|g, r| {
            match (kind, g) {
                (_, 0) => id = common_type(r)?,
                (0, 1) | (1, 1) => elem = r.int()?,
                (0, 2) => drop(r.int()?),
                (3, 1) => key = r.int()?,
                (3, 2) => elem = r.int()?,
                (2, 1) => {
                    let n = r.len()?;
                    for _ in 0..n {
                        let (mut name, mut fid) = (String::new(), 0);
                        r.fields(|h, r| {
                            match h {
                                0 => name = String::from_utf8_lossy(&r.bytes()?).into_owned(),
                                1 => fid = r.int()?,
                                _ => return Err(GobError::BadType("fieldType field")),
                            }
                            Ok(())
                        })?;
                        fields.push((name, fid));
                    }
                }
                _ => return Err(GobError::BadType("unsupported wireType field")),
            }
            Ok(())
        })?;
        let def = match kind {
            0 => TypeDef::Array(elem),
            1 => TypeDef::Slice(elem),
            2 => TypeDef::Struct(fields),
            3 => TypeDef::Map(key, elem),
            _ => {
                return Err(GobError::BadType("GobEncoder/Marshaler types are not supported"));
            }
        };
        result = Some((id, def));
        Ok(())
    })?;
    result.ok_or(GobError::BadType("empty wireType"))
}

struct Decoder<'a> {
    types: std::collections::HashMap<i64, TypeDef>,
    _marker: std::marker::PhantomData<&'a ()>,
}

impl Decoder<'_> {
    fn skip(&self, r: &mut Reader<'_>, id: i64, depth: usize) -> Result<(), GobError> {
        if depth > 16 {
            return Err(GobError::TooDeep);
        }
        match id {
            1..=4 => r.uint().map(drop),
            5 | 6 => r.bytes().map(drop),
            _ => match self.types.get(&id) {
                Some(TypeDef::Slice(elem)) | Some(TypeDef::Array(elem)) => {
                    let n = r.len()?;
                    (0..n).try_for_each(|_| self.skip(r, *elem, depth + 1))
                }
                Some(TypeDef::Map(k, e)) => {
                    let n = r.len()?;
                    (0..n).try_for_each(|_| {
                        self.skip(r, *k, depth + 1)?;
                        self.skip(r, *e, depth + 1)
                    })
                }
                Some(TypeDef::Struct(fields)) => r.fields(|f, r| {
                    let (_, fid) = fields
                        .get(f as usize)
                        .ok_or(GobError::BadType("field number out of range"))?;
                    self.skip(r, *fid, depth + 1)
                }),
                None => Err(GobError::BadType("unknown type id")),
            },
        }
    }

    fn struct_fields(&self, id: i64) -> Result<&Vec<(String, i64)>, GobError> {
        match self.types.get(&id) {
            Some(TypeDef::Struct(fields)) => Ok(fields),
            _ => Err(GobError::BadType("expected a struct type")),
        }
    }

    fn byte_slices(&self, r: &mut Reader<'_>, id: i64, name: &str) -> Result<Vec<Vec<u8>>, GobError> {
        match self.types.get(&id) {
            Some(TypeDef::Slice(BYTES_ID)) => {
                let n = r.len()?;
                (0..n).map(|_| r.bytes()).collect()
            }
            _ => Err(GobError::FieldType(name.to_string())),
        }
    }

    fn inner(&self, r: &mut Reader<'_>, id: i64) -> Result<SparseCompactMerkleProof, GobError> {
        let fields = self.struct_fields(id)?;
        let mut p = SparseCompactMerkleProof::default();
        r.fields(|f, r| {
            let (name, fid) = fields
                .get(f as usize)
                .ok_or(GobError::BadType("field number out of range"))?;
            let expect = |want: i64| {
                if *fid == want {
                    Ok(())
                } else {
                    Err(GobError::FieldType(name.clone()))
                }
            };
            match name.as_str() {
                "SideNodes" => p.side_nodes = self.byte_slices(r, *fid, name)?,
                "NonMembershipLeafData" => {
                    expect(BYTES_ID)?;
                    p.non_membership_leaf_data = r.bytes()?;
                }
                "BitMask" => {
                    expect(BYTES_ID)?;
                    p.bit_mask = r.bytes()?;
                }
                "NumSideNodes" => {
                    expect(INT_ID)?;
                    p.num_side_nodes = r.int()?;
                }
                "SiblingData" => {
                    expect(BYTES_ID)?;
                    p.sibling_data = r.bytes()?;
                }
                _ => self.skip(r, *fid, 1)?,
            }
            Ok(())
        })?;
        Ok(p)
    }

    fn outer(&self, r: &mut Reader<'_>, id: i64) -> Result<SparseCompactMerkleClosestProof, GobError> {
        let fields = self.struct_fields(id)?;
        let mut p = SparseCompactMerkleClosestProof::default();
        r.fields(|f, r| {
            let (name, fid) = fields
                .get(f as usize)
                .ok_or(GobError::BadType("field number out of range"))?;
            let bytes = |r: &mut Reader<'_>| {
                if *fid == BYTES_ID {
                    r.bytes()
                } else {
                    Err(GobError::FieldType(name.clone()))
                }
            };
            match name.as_str() {
                "Path" => p.path = bytes(r)?,
                "FlippedBits" => p.flipped_bits = self.byte_slices(r, *fid, name)?,
                "Depth" => p.depth = bytes(r)?,
                "ClosestPath" => p.closest_path = bytes(r)?,
                "ClosestValueHash" => p.closest_value_hash = bytes(r)?,
                "ClosestProof" => p.closest_proof = Some(self.inner(r, *fid)?),
                _ => self.skip(r, *fid, 1)?,
            }
            Ok(())
        })?;
        Ok(p)
    }
}

/// Decodes a gob stream holding one `SparseCompactMerkleClosestProof` (any self-consistent type ids).
pub fn decode_closest_proof(bytes: &[u8]) -> Result<SparseCompactMerkleClosestProof, GobError> {
    let mut stream = Reader { buf: bytes, pos: 0 };
    let mut decoder = Decoder {
        types: std::collections::HashMap::new(),
        _marker: std::marker::PhantomData,
    };
    while stream.remaining() > 0 {
        let len = stream.len()?;
        let mut msg = Reader {
            buf: stream.take(len)?,
            pos: 0,
        };
        let type_id = msg.int()?;
        if type_id < 0 {
            // Go `Decoder.recvType`: an id below firstUserId or one already defined is "duplicate type received".
            let id = type_id.checked_neg().ok_or(GobError::BadInteger)?;
            if id < FIRST_USER_ID || decoder.types.contains_key(&id) {
                return Err(GobError::BadType("duplicate type received"));
            }
            let (defined, def) = wire_type(&mut msg)?;
            if defined != id {
                return Err(GobError::BadType("definition id does not match its message"));
            }
            // Go `decodeTypeSequence`: a definition message must end with its wireType.
            if msg.remaining() > 0 {
                return Err(GobError::BadType("extra data in buffer"));
            }
            decoder.types.insert(id, def);
        } else if type_id > 0 {
            return decoder.outer(&mut msg, type_id);
        } else {
            return Err(GobError::BadType("type id 0"));
        }
    }
    Err(GobError::NoValue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/vectors/protocol-test-vectors.json")).unwrap()
    }

    #[test]
    fn type_prefix_is_287_bytes_and_golden_proof_round_trips() {
        assert_eq!(hex::decode(TYPE_PREFIX_HEX).unwrap().len(), 287);
        let v = vectors();
        let gob = hex::decode(
            v["smst"]["smt_test_10keys_nil_vh"]["gob_SparseCompactMerkleClosestProof"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(gob.len(), 664);
        let decoded = decode_closest_proof(&gob).unwrap();
        assert_eq!(decoded.flipped_bits, vec![vec![3], vec![6]]);
        assert_eq!(decoded.depth, vec![8]);
        let inner = decoded.closest_proof.as_ref().unwrap();
        assert_eq!(inner.side_nodes.len(), 4);
        assert_eq!(inner.bit_mask, vec![0x78]);
        assert_eq!(inner.num_side_nodes, 8);
        assert_eq!(encode_closest_proof(&decoded), gob);
        let e2e = hex::decode(v["relay_e2e"]["proof_gob"].as_str().unwrap()).unwrap();
        assert_eq!(e2e.len(), 1046);
        assert_eq!(encode_closest_proof(&decode_closest_proof(&e2e).unwrap()), e2e);
    }

    #[test]
    fn integers_follow_gob() {
        let mut out = Vec::new();
        put_uint(&mut out, 374);
        put_int(&mut out, 65);
        put_int(&mut out, -65);
        put_uint(&mut out, 127);
        assert_eq!(hex::encode(&out), "fe0176ff82ff817f");
        let mut r = Reader { buf: &out, pos: 0 };
        assert_eq!(
            (r.uint().unwrap(), r.int().unwrap(), r.int().unwrap(), r.uint().unwrap()),
            (374, 65, -65, 127)
        );
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(decode_closest_proof(&[]), Err(GobError::NoValue));
        assert_eq!(decode_closest_proof(&[0x05, 0x01]), Err(GobError::Truncated));
        assert!(decode_closest_proof(&[0x01, 0x00]).is_err());
        let prefix = hex::decode(TYPE_PREFIX_HEX).unwrap();
        assert_eq!(decode_closest_proof(&prefix), Err(GobError::NoValue));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(random in proptest::collection::vec(proptest::num::u8::ANY, 0..700), index in 0usize..700, byte in proptest::num::u8::ANY) {
            let _ = decode_closest_proof(&random);
            let gob = hex::decode(vectors()["smst"]["smt_test_10keys_nil_vh"]["gob_SparseCompactMerkleClosestProof"].as_str().unwrap()).unwrap();
            let mut mutated = gob.clone();
            let i = index % mutated.len();
            mutated[i] = byte;
            let _ = decode_closest_proof(&mutated);
            let _ = decode_closest_proof(&gob[..i]);
        }
    }
}
