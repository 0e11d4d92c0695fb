#!/usr/bin/env python3
# Writes payload_hash_relays.jsonl: two `relay` conformance vectors (../shared/spec/vectors-format.md) whose
# response carries payload "hello" and an empty-but-present payload_hash (22 00). Go (poktroll v0.1.35
# x/service/types/relay.go GetSignableBytesHash; relay.pb.go Unmarshal sets PayloadHash = []byte{}, non-nil) drops
# the payload from the signable bytes: the first is signed over those (valid), the second over the bytes with the
# payload kept (invalid on chain). Needs the `cryptography` package (any valid low-S signature will do).
import hashlib, json, os
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives import hashes
N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141
here = os.path.dirname(os.path.abspath(__file__))
public = os.path.join(here, "..", "..", "..", "tests", "vectors", "public.jsonl")
e2e = next(json.loads(l) for l in open(public) if '"kind": "relay"' in l)   # spec §7 relay_e2e
def v(x):
    o = b""
    while x >= 0x80: o += bytes([x & 0x7f | 0x80]); x >>= 7
    return o + bytes([x])
ld = lambda f, b: v(f << 3 | 2) + v(len(b)) + b
res_e2e = bytes.fromhex(e2e["relay_response"])
header = res_e2e[5:5 + 122]                          # 0a be01 0a 7a <header 122 B> 12 40 <sig>
assert res_e2e[:5] == bytes.fromhex("0abe010a7a") and len(header) == 122
key = ec.derive_private_key(int("aed2e2b467093f219d356d28f05b71249e69e4c399e66bed779e4218984b9ec2", 16), ec.SECP256K1())
def sign(d):                                          # cosmos secp256k1 Sign(d): ECDSA over SHA256(d), low-S, r||s
    r, s = utils.decode_dss_signature(key.sign(d, ec.ECDSA(hashes.SHA256())))
    s = min(s, N - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
signable_go = ld(1, ld(1, header))                    # payload dropped (PayloadHash != nil), empty hash omitted
signable_kept = ld(1, ld(1, header)) + ld(2, b"hello")   # what a `len(PayloadHash) > 0` check would sign
out = []
for name, signable, valid in [("go", signable_go, True), ("payload_kept", signable_kept, False)]:
    d = hashlib.sha256(signable).digest()
    sig = sign(d)
    meta = ld(1, header) + ld(2, sig)
    response = ld(1, meta) + ld(2, b"hello") + b"\x22\x00"
    relay = ld(1, bytes.fromhex(e2e["relay_request"])) + ld(2, ld(1, meta))   # res: payload cleared, 22 00 not re-encoded
    out.append({"kind": "relay", "relay_request": e2e["relay_request"], "relay_response": response.hex(),
                "request_signable_sha256": e2e["request_signable_sha256"],
                "response_signable_sha256": hashlib.sha256(signable_go).hexdigest(),
                "relay_hash": hashlib.sha256(relay).hexdigest(), "ring_valid": True,
                "supplier_pub": e2e["supplier_pub"], "supplier_signature_valid": valid,
                "note": name})
with open(os.path.join(here, "payload_hash_relays.jsonl"), "w") as f:
    for o in out:
        f.write(json.dumps(o) + "\n")
