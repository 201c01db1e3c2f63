"""Ed25519 signatures (RFC 8032) in pure Python, because the agent may import only the standard library.

The agent verifies the signatures the gateway puts on probe commands, and makes its own key pair for its TLS
client certificate. verify() makes OpenSSL's check, so that the gateway's `cryptography` and the agent agree: S
must be below L, and the cofactorless [S]B - [k]A == R is made on encodings. It is stricter in one place, as RFC
8032 asks: a public key that is not a canonical encoding (y >= p, or x = 0 with the sign bit set) is rejected,
where OpenSSL reduces it and carries on. No key made from a seed is encoded that way.

Python's integers do not run in constant time, so signing may leak the key through timing to someone who can
measure it; the agent signs once, in its own process, when it makes its key, and OpenSSL does the TLS handshake's
signing from the PEM."""

from __future__ import annotations

import base64
import functools
import hashlib
import os

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point B
D = -121665 * pow(121666, -1, P) % P
D2 = 2 * D % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
_BASE_ENCODING = bytes.fromhex("58" + "66" * 31)  # y = 4/5, x even

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z, x*y = T/Z
_Cached = tuple[int, int, int, int]  # (Y+X, Y-X, 2Z, 2dT): the second operand of _add, computed once per point
_IDENTITY: _Point = (0, 1, 1, 0)

# RFC 8410's fixed DER around the 32 key bytes: PKCS#8 v1 with the id-Ed25519 OID (1.3.101.112) and no params.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def _add(p: _Point, q: _Cached) -> _Point:
    """p + q (add-2008-hwcd-3, a = -1): complete, so it also doubles and adds the identity."""
    x1, y1, z1, t1 = p
    ypx, ymx, z2, t2d = q
    a = (y1 - x1) * ymx % P
    b = (y1 + x1) * ypx % P
    c = t1 * t2d % P
    d = z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _double(p: _Point) -> _Point:
    """2p (dbl-2008-hwcd, a = -1); T is not an input, so runs of doublings need no more than this."""
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    e = (h - (x1 + y1) * (x1 + y1)) % P
    g = a - b
    f = c + g
    return e * f % P, g * h % P, f * g % P, e * h % P


def _cache(p: _Point) -> _Cached:
    x, y, z, t = p
    return (y + x) % P, (y - x) % P, 2 * z % P, t * D2 % P


def _cache_affine(points: list[_Point]) -> list[_Cached]:
    """The points with Z = 1 (adding one then saves a multiplication), sharing one inversion (Montgomery's trick)."""
    running = [1]
    for point in points:
        running.append(running[-1] * point[2] % P)
    inverse = pow(running[-1], -1, P)
    cached: list[_Cached] = []
    for (big_x, big_y, z, _), before in zip(reversed(points), reversed(running[:-1]), strict=True):
        zi, inverse = inverse * before % P, inverse * z % P
        x, y = big_x * zi % P, big_y * zi % P
        cached.append(((y + x) % P, (y - x) % P, 2, x * y % P * D2 % P))
    return cached[::-1]


def _encode(p: _Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, -1, P)
    return (y * zi % P | (x * zi % P & 1) << 255).to_bytes(32, "little")


def _decode(s: bytes) -> _Point | None:
    """The point s encodes (RFC 8032 5.1.3), or None for y >= p, no such x, or x = 0 with its sign bit set."""
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    yy = y * y % P
    u, v = (yy - 1) % P, (D * yy + 1) % P
    # x = sqrt(u / v) without a separate inversion: (u v^3)(u v^7)^((p-5)/8), then fix up by sqrt(-1).
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx == (-u) % P:
        x = x * SQRT_M1 % P
    elif vxx != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y, 1, x * y % P


@functools.cache
def _base_table() -> tuple[tuple[_Cached, ...], ...]:
    """Row i holds j * 16^i * B for j = 1..15, so [k]B takes one addition per hex digit of k and no doublings."""
    base = _decode(_BASE_ENCODING)
    assert base is not None
    multiples = []
    for _ in range(64):
        multiple, step = base, _cache(base)
        for _ in range(15):
            multiples.append(multiple)
            multiple = _add(multiple, step)
        base = multiple
    cached = _cache_affine(multiples)
    return tuple(tuple(cached[i : i + 15]) for i in range(0, len(cached), 15))


def _base_mul(k: int, start: _Point = _IDENTITY) -> _Point:
    """start + [k]B, for 0 <= k < 2^256."""
    p = start
    for row in _base_table():
        if k & 15:
            p = _add(p, row[(k & 15) - 1])
        k >>= 4
    return p


def _mul(k: int, q: _Point) -> _Point:
    """[k]q for 0 <= k < 2^256, four bits at a time (variable time: k and q are public where this is used)."""
    step = _cache(q)
    multiples = [step]
    for _ in range(14):
        q = _add(q, step)
        multiples.append(_cache(q))
    p = _IDENTITY
    for shift in range(252, -1, -4):
        p = _double(_double(_double(_double(p))))
        digit = (k >> shift) & 15
        if digit:
            p = _add(p, multiples[digit - 1])
    return p


def _hash_int(*parts: bytes) -> int:
    h = hashlib.sha512()
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest(), "little")


def _check_length(value: bytes, what: str) -> None:
    if len(value) != 32:
        raise ValueError(f"an Ed25519 {what} is 32 bytes, not {len(value)}")


def _expand(seed: bytes) -> tuple[int, bytes]:
    """The clamped secret scalar and the nonce prefix of a seed (RFC 8032 5.1.5)."""
    _check_length(seed, "seed")
    h = hashlib.sha512(seed).digest()
    return int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254), h[32:]


def generate_seed() -> bytes:
    """A new private key: 32 random bytes."""
    return os.urandom(32)


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a seed."""
    return _encode(_base_mul(_expand(seed)[0]))


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte signature R || S of message (deterministic: the nonce is a hash of the key and message)."""
    a, prefix = _expand(seed)
    public = _encode(_base_mul(a))
    r = _hash_int(prefix, message) % L
    big_r = _encode(_base_mul(r))
    s = (r + _hash_int(big_r, public, message) % L * a) % L
    return big_r + s.to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether signature is public's signature of message; False, never an exception, for malformed input."""
    if len(public) != 32 or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    a = _decode(public)
    if s >= L or a is None:
        return False
    k = _hash_int(signature[:32], public, message) % L
    x, y, z, t = a
    # Comparing with R's bytes, as OpenSSL does, rejects any R that is not a canonical point encoding without
    # decoding it: an encoding computed here is always canonical.
    return _encode(_base_mul(s, _mul(k, (-x % P, y, z, -t % P)))) == signature[:32]


def private_key_pem(seed: bytes) -> bytes:
    """The seed as an unencrypted PKCS#8 PEM, the form ssl.SSLContext.load_cert_chain reads."""
    _check_length(seed, "seed")
    body = base64.b64encode(_PKCS8_PREFIX + seed).decode("ascii")  # 48 bytes: exactly one 64-character line
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n".encode("ascii")


def public_key_der(public: bytes) -> bytes:
    """The public key as a DER SubjectPublicKeyInfo, as X.509 certificates and CSRs carry it."""
    _check_length(public, "public key")
    return _SPKI_PREFIX + public
