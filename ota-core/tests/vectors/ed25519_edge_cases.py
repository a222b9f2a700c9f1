#!/usr/bin/env python3
"""Builds the Ed25519 edge-case vectors of docs/image-format.md section 1.6 and prints each
with the verdicts of OpenSSL (`openssl pkeyutl`) and Python's `cryptography`.

Not run by the test suite (ota-core/tests/golden.rs checks the vectors as the document holds
them); run it by hand to rebuild or cross-check them:

    python3 ota-core/tests/vectors/ed25519_edge_cases.py

The point arithmetic below is plain RFC 8032 section 5.1 (extended coordinates, section
5.1.4 addition), slow and variable-time: for building test vectors only.
"""
import hashlib
import subprocess
import sys
import tempfile

p = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
d = -121665 * pow(121666, p - 2, p) % p
SQRT_M1 = pow(2, (p - 1) // 4, p)
O = (0, 1, 1, 0)


def add(P, Q):
    x1, y1, z1, t1 = P
    x2, y2, z2, t2 = Q
    a = (y1 - x1) * (y2 - x2) % p
    b = (y1 + x1) * (y2 + x2) % p
    c = 2 * t1 * t2 * d % p
    dd = 2 * z1 * z2 % p
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def mul(s, P):
    Q = O
    while s > 0:
        if s & 1:
            Q = add(Q, P)
        P = add(P, P)
        s >>= 1
    return Q


def enc(P):
    x, y, z, _ = P
    zi = pow(z, p - 2, p)
    x, y = x * zi % p, y * zi % p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def dec(b):
    """RFC 8032 5.1.3 decoding; None where it fails."""
    v = int.from_bytes(b, "little")
    sign, y = v >> 255, v & ((1 << 255) - 1)
    if y >= p:
        return None
    x2 = (y * y - 1) * pow(d * y * y + 1, p - 2, p) % p
    if x2 == 0:
        if sign:
            return None
        return (0, y, 1, 0)
    x = pow(x2, (p + 3) // 8, p)
    if (x * x - x2) % p:
        x = x * SQRT_M1 % p
    if (x * x - x2) % p:
        return None
    if x & 1 != sign:
        x = p - x
    return (x, y, 1, x * y % p)


def same(P, Q):
    return (P[0] * Q[2] - Q[0] * P[2]) % p == 0 and (P[1] * Q[2] - Q[1] * P[2]) % p == 0


B = dec((4 * pow(5, p - 2, p) % p).to_bytes(32, "little"))
assert same(mul(L, B), O)
# A point of order 8 (the one with an even x), and the point of order 2, (0, -1).
T8 = dec(bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"))
assert same(mul(8, T8), O) and not same(mul(4, T8), O)
T2 = mul(4, T8)
assert enc(T2) == bytes.fromhex("ec" + "ff" * 30 + "7f")


def sha512_int(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


# The RFC 8032 test 1 key, as in section 1.5.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
h = hashlib.sha512(SEED).digest()
a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
PREFIX = h[32:]
A_POINT = mul(a, B)
A = enc(A_POINT)
MSG = b"OTAM edge case"


def sign(r, r_enc, a_enc=A, msg=MSG):
    """S = r + k a with k = SHA-512(R || A || M) mod L, for any R encoding the caller gives."""
    k = sha512_int(r_enc, a_enc, msg) % L
    return r_enc + ((r + k * a) % L).to_bytes(32, "little")


r = sha512_int(PREFIX, MSG) % L
HONEST = sign(r, enc(mul(r, B)))
S_HONEST = int.from_bytes(HONEST[32:], "little")
IDENTITY = enc(O)
IDENTITY_Y_IS_P_PLUS_1 = (p + 1).to_bytes(32, "little")

# A key with an order-2 component, and a message whose k is odd, so [k]T2 is not the identity.
A_MIXED = enc(add(A_POINT, T2))
MSG_MIXED = next(
    m
    for m in (MSG + bytes([i]) for i in range(256))
    if sha512_int(enc(mul(sha512_int(PREFIX, m) % L, B)), A_MIXED, m) % L % 2 == 1
)
r_mixed = sha512_int(PREFIX, MSG_MIXED) % L

# (device verdict, description, A, M, signature)
VECTORS = [
    ("accept", "an honest RFC 8032 signature", A, MSG, HONEST),
    ("accept", "R = rB + T8, T8 of order 8", A, MSG, sign(r, enc(add(mul(r, B), T8)))),
    ("accept", "R = rB + T2, T2 = (0, -1) of order 2", A, MSG, sign(r, enc(add(mul(r, B), T2)))),
    ("refuse", "R = identity (r = 0), S = k a", A, MSG, sign(0, IDENTITY)),
    ("refuse", "R = T8, small order, S = k a", A, MSG, sign(0, enc(T8))),
    ("refuse", "R = identity encoded with y = p + 1, S = k a", A, MSG, sign(0, IDENTITY_Y_IS_P_PLUS_1)),
    ("refuse", "S + L in place of S", A, MSG, HONEST[:32] + (S_HONEST + L).to_bytes(32, "little")),
    ("refuse", "A = identity, R = identity, S = 0", IDENTITY, MSG, IDENTITY + bytes(32)),
    ("refuse", "A = identity encoded with y = p + 1, R = identity, S = 0",
     IDENTITY_Y_IS_P_PLUS_1, MSG, IDENTITY + bytes(32)),
    ("accept", "A = aB + T2, honest signature, k odd", A_MIXED, MSG_MIXED,
     sign(r_mixed, enc(mul(r_mixed, B)), A_MIXED, MSG_MIXED)),
]

SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def openssl_verdict(pk, msg, sig):
    with tempfile.TemporaryDirectory() as t:
        for name, data in (("pk.der", SPKI_PREFIX + pk), ("msg", msg), ("sig", sig)):
            with open(f"{t}/{name}", "wb") as f:
                f.write(data)
        out = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey",
             f"{t}/pk.der", "-rawin", "-in", f"{t}/msg", "-sigfile", f"{t}/sig"],
            capture_output=True, text=True,
        )
        return "accept" if "Verified Successfully" in out.stdout else "refuse"


def cryptography_verdict(pk, msg, sig):
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return "n/a"
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
        return "accept"
    except (InvalidSignature, ValueError):
        return "refuse"


def main():
    for i, (verdict, what, pk, msg, sig) in enumerate(VECTORS, 1):
        print(f"{i} {verdict} {what}")
        print(f"A {pk.hex()}")
        print(f"M {msg.hex()}")
        print(f"R {sig[:32].hex()}")
        print(f"S {sig[32:].hex()}")
    print(file=sys.stderr)
    for i, (verdict, what, pk, msg, sig) in enumerate(VECTORS, 1):
        print(f"{i:2} device {verdict}  openssl {openssl_verdict(pk, msg, sig)}  "
              f"cryptography {cryptography_verdict(pk, msg, sig)}  {what}", file=sys.stderr)


if __name__ == "__main__":
    main()
