#!/usr/bin/env python3
# Generates proof_limits.jsonl: crafted closest proofs at and just past each limit smt v0.14.1 (as poktroll
# v0.1.35 uses it) puts on a proof (spec §5.3, §5.4 (17)). Independent of the Rust code: Go gob value encoding
# from the encoding/gob spec, the root folded as smt verifyProofWithUpdates does, hashlib only.
# Run from this directory: python3 proof_limits.py
import hashlib, json, os, struct
# The constant 287-byte type definitions a fresh Go gob.Encoder writes first (spec §5.3).
PREFIX = bytes.fromhex(
    "ff88ff810301011f537061727365436f6d706163744d65726b6c65436c6f7365737450726f6f6601ff820001060104506174"
    "68010a00010b466c69707065644269747301ff840001054465707468010a00010b436c6f7365737450617468010a00011043"
    "6c6f7365737456616c756548617368010a00010c436c6f7365737450726f6f6601ff8600000017ff83020101095b5d5b5d75"
    "696e743801ff8400010a00007cff8503010118537061727365436f6d706163744d65726b6c6550726f6f6601ff8600010501"
    "09536964654e6f64657301ff840001154e6f6e4d656d626572736869704c65616644617461010a0001074269744d61736b01"
    "0a00010c4e756d536964654e6f646573010400010b5369626c696e6744617461010a000000"
)
def guint(x):
    if x < 128: return bytes([x])
    b = x.to_bytes((x.bit_length() + 7) // 8, "big")
    return bytes([256 - len(b)]) + b
def gint(x): return guint(2 * x if x >= 0 else 2 * (-x) - 1)
def gbytes(b): return guint(len(b)) + b
def gstruct(fields):           # fields: list of (index, encoded value) in ascending order, zero values left out
    out, prev = b"", -1
    for i, enc in fields:
        out += guint(i - prev) + enc; prev = i
    return out + b"\x00"
def gob(path, flips, depth, closest, value, inner):
    f = [(0, gbytes(path))] if path else []
    if flips: f.append((1, guint(len(flips)) + b"".join(gbytes(x) for x in flips)))
    if depth: f.append((2, gbytes(depth)))
    if closest: f.append((3, gbytes(closest)))
    if value: f.append((4, gbytes(value)))
    if inner is not None:
        side, nml, mask, n, sib = inner
        g = []
        if side: g.append((0, guint(len(side)) + b"".join(gbytes(x) for x in side)))
        if nml: g.append((1, gbytes(nml)))
        if mask: g.append((2, gbytes(mask)))
        if n: g.append((3, gint(n)))
        if sib: g.append((4, gbytes(sib)))
        f.append((5, gstruct(g)))
    msg = gint(65) + gstruct(f)
    return PREFIX + guint(len(msg)) + msg
def bit(p, i): return (p[i // 8] >> (7 - i % 8)) & 1
def sc(d): return struct.unpack(">QQ", d[32:48])
def inner(l, r):
    s = (sc(l)[0] + sc(r)[0]) % 2**64; c = (sc(l)[1] + sc(r)[1]) % 2**64
    tail = struct.pack(">QQ", s, c)
    return hashlib.sha256(b"\x01" + l + r + tail).digest() + tail
def root_of(closest, value, sides):            # smt verifyProofWithUpdates over the decompacted side nodes
    cur = hashlib.sha256(b"\x00" + closest + value).digest() + value[-16:]
    n = len(sides)
    for i, s in enumerate(sides):
        cur = inner(s, cur) if bit(closest, n - 1 - i) else inner(cur, s)
    return cur
def flip(p, fl):
    p = bytearray(p)
    for f in fl: p[f // 8] ^= 0x80 >> (f % 8)
    return bytes(p)
PH = bytes(48)
path = hashlib.sha256(b"golden proof limits path").digest()
value = b"relay-bytes" + struct.pack(">QQ", 7, 1)
other_leaf = hashlib.sha256(b"other leaf").digest() + struct.pack(">QQ", 5, 1)
def case(name, valid, why, flips_int, depth_bz, flips_bz, n, mask, side_given, sides_full, nml=b"", sib=b"", p=path, value=value, inner_present=True, root=None):
    closest = flip(path, [f for f in flips_int if f < 256])
    if root is None: root = root_of(closest, value, sides_full)
    bz = gob(p, flips_bz, depth_bz, closest, value, (side_given, nml, mask, n, sib) if inner_present else None)
    return {"kind": "smst_verify_proof", "root": root.hex(), "path": p.hex(), "proof": bz.hex(), "valid": valid, "note": name + ": " + why}
out = []
# --- N = 256 side nodes (the maximum): all placeholders except the deepest ---
full256 = [other_leaf] + [PH] * 255
mask256 = bytes([0x7f]) + bytes([0xff]) * 31
out.append(case("num_side_nodes_256", True, "NumSideNodes = 256 = PathSize*8 is allowed, BitMask 32 bytes, Depth 256 as 2 bytes 0100, flips 0 and 255 (1 and 2 bytes)",
    [0, 255], b"\x01\x00", [b"\x00", b"\x00\xff"], 256, mask256, [other_leaf], full256))
mask257 = mask256 + b"\x80"
out.append(case("num_side_nodes_257", False, "NumSideNodes 257 > 256 (smt SparseCompactMerkleProof.validateBasic)",
    [0, 255], b"\x01\x00", [b"\x00", b"\x00\xff"], 257, mask257, [other_leaf], full256))
out.append(case("num_side_nodes_negative", False, "NumSideNodes -1 < 0",
    [0, 255], b"\x01\x00", [b"\x00", b"\x00\xff"], -1, b"", [other_leaf], full256, root=root_of(flip(path,[0,255]), value, full256)))
out.append(case("depth_257", False, "Depth 257 (0101) > 256 (SparseMerkleClosestProof.validateBasic)",
    [0, 255], b"\x01\x01", [b"\x00", b"\x00\xff"], 256, mask256, [other_leaf], full256))
out.append(case("depth_3_bytes", False, "Depth 000100 is 3 bytes > minBytes(256) = 2, even though its value is 256",
    [0, 255], b"\x00\x01\x00", [b"\x00", b"\x00\xff"], 256, mask256, [other_leaf], full256))
out.append(case("flip_3_bytes", False, "FlippedBits entry 0000ff is 3 bytes > 2",
    [0, 255], b"\x01\x00", [b"\x00", b"\x00\x00\xff"], 256, mask256, [other_leaf], full256))
# --- a small proof: N = 9 (BitMask must be exactly 2 bytes) ---
sides9 = [other_leaf, PH, PH, PH, PH, PH, PH, PH, hashlib.sha256(b"top").digest() + struct.pack(">QQ", 11, 2)]
mask9 = bytes([0x7f, 0x00])
given9 = [sides9[0], sides9[8]]
out.append(case("bitmask_2_bytes_for_9", True, "NumSideNodes 9 with a 2-byte BitMask and 9 - popcount = 2 side nodes, Depth 9, flip 9 = Depth allowed",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9))
out.append(case("bitmask_1_byte_for_9", False, "BitMask 1 byte != ceil(9/8) = 2",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9[:1], given9, sides9))
out.append(case("bitmask_3_bytes_for_9", False, "BitMask 3 bytes != 2",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9 + b"\x00", given9, sides9))
out.append(case("side_nodes_one_too_many", False, "3 side nodes given, 9 - popcount(BitMask) = 2",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9 + [other_leaf], sides9))
out.append(case("side_nodes_one_too_few", False, "1 side node given, 2 expected",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9[:1], sides9))
out.append(case("flip_past_depth", False, "flip 10 > Depth 9",
    [3, 10], b"\x09", [b"\x03", b"\x0a"], 9, mask9, given9, sides9))
out.append(case("path_31_bytes", False, "Path is 31 bytes, not PathSize 32",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9, p=path[:31]))
out.append(case("path_33_bytes", False, "Path is 33 bytes",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9, p=path + b"\x00"))
out.append(case("closest_value_15_bytes", False, "ClosestValueHash shorter than sum and count (Go slices data[len-16:] and panics; recovered as a failed tx)",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9, value=b"\x00" * 15, root=bytes(48)))
out.append(case("trailing_bytes_after_value", True, "gob.Decoder.Decode reads one value; bytes after it are never read",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9))
out[-1]["proof"] += "0300ff"
# SiblingData: checked only with side nodes; then every side node must be 48 bytes and SHA256(data) || last 16 bytes == SideNodes[0]
sib = b"\x00" + hashlib.sha256(b"sibling path").digest() + b"sibling value" + struct.pack(">QQ", 5, 1)
sib_digest = hashlib.sha256(sib).digest() + sib[-16:]
sides_s = [sib_digest] + sides9[1:]
out.append(case("sibling_data_matches", True, "SiblingData hashes to SideNodes[0]",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, [sib_digest, sides9[8]], sides_s, sib=sib))
out.append(case("sibling_data_mismatch", False, "SiblingData does not hash to SideNodes[0]",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, [sib_digest, sides9[8]], sides_s, sib=sib[:-1] + b"\x02"))
short = sides9[8][:47]
out.append(case("sibling_data_side_node_47_bytes", False, "with SiblingData every side node must be 48 bytes (one is 47)",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, [sib_digest, short], [sib_digest] + sides9[1:8] + [short + b"\x00"], sib=sib))
out.append(case("no_sibling_data_side_node_47_bytes", True, "without SiblingData side node sizes are not checked; a 47-byte node is zero-padded to 48 when folded",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, [other_leaf, short], sides9[:8] + [short + b"\x00"]))
# N = 0: BitMask must be empty; given side nodes are then never read (validateBasic checks the count only when N > 0)
out.append(case("zero_side_nodes_stray_given", True, "NumSideNodes 0, empty BitMask: the root is the leaf digest; a stray side node is ignored",
    [], b"\x00", [], 0, b"", [other_leaf], []))
out.append(case("zero_side_nodes_bitmask_1_byte", False, "NumSideNodes 0 needs an empty BitMask",
    [], b"\x00", [], 0, b"\x00", [], []))
# smt DecompactClosestProof: ClosestProof.validateBasic on a nil *SparseCompactMerkleProof dereferences nil and panics
out.append(case("closest_proof_absent", False, "ClosestProof field absent: Go dereferences the nil pointer in validateBasic (panic, recovered as a failed tx)",
    [], b"\x00", [], 0, b"", [], [], inner_present=False))
# SparseMerkleProof.validateBasic: NonMembershipLeafData != nil must be at least 1 + PathSize = 33 bytes
out.append(case("non_membership_leaf_data_32", False, "NonMembershipLeafData of 32 bytes < 33",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9, nml=b"\x00" * 32))
out.append(case("non_membership_leaf_data_33", True, "NonMembershipLeafData of 33 bytes passes validateBasic and is not read for a membership proof",
    [3, 9], b"\x09", [b"\x03", b"\x09"], 9, mask9, given9, sides9, nml=b"\x00" * 33))
# Go gob Decoder (encoding/gob decoder.go) refuses, before any value: a type definition message with bytes left
# after its wireType ("extra data in buffer"), and a definition of an id below firstUserId 64 or of an id already
# defined ("gob: duplicate type received").
base = next(o for o in out if o["note"].startswith("bitmask_2_bytes_for_9"))
base_bz = bytes.fromhex(base["proof"])
def messages(bz):
    msgs, i = [], 0
    while i < len(bz):
        n = bz[i]; j = i + 1
        if n >= 128: k = 256 - n; n = int.from_bytes(bz[j:j + k], "big"); j += k
        msgs.append(bz[i:j + n]); i = j + n
    return msgs
def frame(body): return guint(len(body)) + body
def body(msg):
    n = msg[0]
    return msg[1:] if n < 128 else msg[1 + 256 - n:]
msgs = messages(base_bz)
assert len(msgs) == 4 and b"".join(msgs) == base_bz
def variant(name, valid, why, new_msgs):
    o = dict(base); o["proof"] = b"".join(new_msgs).hex(); o["valid"] = valid; o["note"] = name + ": " + why
    out.append(o)
variant("gob_extra_data_after_type_definition", False, "one byte left in the first type definition message after its wireType",
    [frame(body(msgs[0]) + b"\x00")] + msgs[1:])
variant("gob_duplicate_type_definition", False, "the [][]uint8 definition (id 66) sent twice",
    msgs[:3] + [msgs[1], msgs[3]])
slice63 = gint(-63) + gstruct([(1, gstruct([(0, gstruct([(0, gbytes(b"[][]uint8")), (1, gint(63))])), (1, gint(5))]))])
variant("gob_type_id_below_64", False, "a (self-consistent, unused) definition of id 63 < firstUserId 64",
    msgs[:3] + [frame(slice63), msgs[3]])
slice90 = gint(-90) + gstruct([(1, gstruct([(0, gstruct([(0, gbytes(b"[][]uint8")), (1, gint(90))])), (1, gint(5))]))])
variant("gob_unused_type_definition", True, "an extra, unused definition of a fresh id 90 is fine",
    msgs[:3] + [frame(slice90), msgs[3]])
# Self-check of this encoder against the Go-emitted definition of id 66 in the constant prefix.
slice66 = gint(-66) + gstruct([(1, gstruct([(0, gstruct([(0, gbytes(b"[][]uint8")), (1, gint(66))])), (1, gint(5))]))])
assert frame(slice66) == msgs[1]

# Cases where relay-miner's src/smst still accepts what smt rejects (kept apart so the main file passes as a whole).
DIVERGENT = {"closest_proof_absent", "non_membership_leaf_data_32"}
here = os.path.dirname(os.path.abspath(__file__))
for name, keep in [("proof_limits.jsonl", False), ("proof_limits_divergent.jsonl", True)]:
    with open(os.path.join(here, name), "w") as f:
        f.write("# Crafted closest proofs at and just past each limit of smt v0.14.1 / poktroll v0.1.35 (spec 5.3, 5.4 (17)),\n")
        f.write("# generated by proof_limits.py next to this file (hashlib only; format ../shared/spec/vectors-format.md).\n")
        if keep:
            f.write("# Limits on the inner ClosestProof (absent; NonMembershipLeafData of 1..=32 bytes), refused by smst::ClosestProof::decompact.\n")
        for o in out:
            if (o["note"].split(":")[0] in DIVERGENT) == keep:
                f.write(json.dumps(o) + "\n")
