"""The agent's pure-Python Ed25519 agrees with RFC 8032 and with `cryptography` (OpenSSL), and its keys load in ssl."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhole.agent.link import ed25519

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1: (secret key, public key, message, signature), all hex.
TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)
RFC8032_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="TEST 3",
    ),
    pytest.param(
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
        id="TEST 1024",
    ),
]

# The eight points of order dividing 8, canonically encoded: keys and R values a cofactorless check treats
# differently from a cofactored one, so they show which check verify() makes.
SMALL_ORDER = [
    bytes.fromhex(h)
    for h in [
        "0100000000000000000000000000000000000000000000000000000000000000",  # the identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ]
]

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=300)


def encoding(y: int, sign: int = 0) -> bytes:
    return (y | sign << 255).to_bytes(32, "little")


def cryptography_verifies(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_VECTORS)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    seed, msg = bytes.fromhex(secret), bytes.fromhex(message)
    assert ed25519.public_key(seed).hex() == public
    assert ed25519.sign(seed, msg).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), msg, bytes.fromhex(signature))
    assert not ed25519.verify(bytes.fromhex(public), msg + b"\x00", bytes.fromhex(signature))
    # The vectors themselves are checked against OpenSSL, so a mistyped byte fails here and not only above.
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert raw_public(key).hex() == public
    assert key.sign(msg).hex() == signature


@settings(deadline=None, max_examples=300)
@given(seed=seeds, message=messages)
def test_keys_and_signatures_equal_cryptographys(seed: bytes, message: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = ed25519.public_key(seed)
    assert public == raw_public(key)
    signature = ed25519.sign(seed, message)
    assert signature == key.sign(message)
    assert cryptography_verifies(public, message, signature)
    assert ed25519.verify(public, message, key.sign(message))


@settings(deadline=None, max_examples=300)
@given(seed=seeds, message=messages.filter(bool), part=st.sampled_from(["message", "signature", "key"]), data=st.data())
def test_a_flipped_bit_is_rejected_as_cryptography_rejects_it(
    seed: bytes, message: bytes, part: str, data: st.DataObject
) -> None:
    public, signature = ed25519.public_key(seed), ed25519.sign(seed, message)
    values = {"message": message, "signature": signature, "key": public}
    flipped = bytearray(values[part])
    bit = data.draw(st.integers(0, len(flipped) * 8 - 1), label="bit")
    flipped[bit // 8] ^= 1 << (bit % 8)
    values[part] = bytes(flipped)
    ours = ed25519.verify(values["key"], values["message"], values["signature"])
    assert ours == cryptography_verifies(values["key"], values["message"], values["signature"])
    assert not ours


def test_signing_is_deterministic_and_seeds_are_random() -> None:
    seed = ed25519.generate_seed()
    assert len(seed) == 32
    assert seed != ed25519.generate_seed()
    assert ed25519.sign(seed, b"m") == ed25519.sign(seed, b"m")
    assert len(ed25519.sign(seed, b"m")) == 64


def test_s_at_or_above_l_is_rejected() -> None:
    seed = bytes(range(32))
    public, message = ed25519.public_key(seed), b"probe"
    signature = ed25519.sign(seed, message)
    s = int.from_bytes(signature[32:], "little")
    for bad_s in (s + L, L, 2**256 - 1):
        forged = signature[:32] + bad_s.to_bytes(32, "little")
        assert not ed25519.verify(public, message, forged)
        assert not cryptography_verifies(public, message, forged)


def test_non_canonical_r_is_rejected() -> None:
    """An R of y >= p (or x = 0 with the sign bit) never equals the encoding verify() computes."""
    s = 1234
    for bad_r in (encoding(P + 1), encoding(1, 1), encoding(P - 1, 1), encoding(P)):
        signature = bad_r + s.to_bytes(32, "little")
        for public in SMALL_ORDER:
            assert not ed25519.verify(public, b"", signature)
            assert not cryptography_verifies(public, b"", signature)


def clamped_scalar(seed: bytes) -> int:
    return int.from_bytes(hashlib.sha512(seed).digest()[:32], "little") & ((1 << 254) - 8) | (1 << 254)


def test_non_canonical_public_keys_are_rejected() -> None:
    """y >= p, and x = 0 with the sign bit set, do not decode (RFC 8032 5.1.3). OpenSSL reduces such a key and
    goes on; no key made from a seed is encoded so, so the gateway's signatures are unaffected."""
    seed = bytes(range(32))
    # [S]B - [k]O = [S]B: with R = [a]B and S = a, this is a signature by the identity O of every message.
    identity_signature = ed25519.public_key(seed) + (clamped_scalar(seed) % L).to_bytes(32, "little")
    assert ed25519.verify(encoding(1), b"any message", identity_signature)
    assert not ed25519.verify(encoding(P + 1), b"any message", identity_signature)
    assert not ed25519.verify(encoding(1, 1), b"any message", identity_signature)
    non_canonical = [encoding(y, sign) for y in range(P, 2**255) for sign in (0, 1)]
    non_canonical += [encoding(1, 1), encoding(P - 1, 1)]
    for public in non_canonical:
        for message in (b"", b"a", b"b", b"c"):
            assert not ed25519.verify(public, message, identity_signature)
            assert not ed25519.verify(public, message, encoding(1) + bytes(32))


def test_small_order_keys_and_rs_are_judged_as_cryptography_judges_them() -> None:
    """With S = 0 the check is [k]A == -R: the cofactorless equation accepts exactly when OpenSSL does."""
    accepted = 0
    for public in SMALL_ORDER:
        for r in SMALL_ORDER:
            for message in (b"0", b"1", b"2", b"3"):
                signature = r + bytes(32)
                ours = ed25519.verify(public, message, signature)
                assert ours == cryptography_verifies(public, message, signature), (public.hex(), r.hex(), message)
                accepted += ours
    assert accepted  # the identity key accepts R = identity for every message, at least


def test_mixed_order_key_is_checked_without_the_cofactor() -> None:
    """A key aB + T (T of order 8) signed with a: [S]B - [k]A = R - [k]T, equal to R only when 8 divides k. A
    cofactored check would accept all of these; OpenSSL's, and ours, only those."""
    seed = bytes(range(32))
    a, prefix = clamped_scalar(seed), hashlib.sha512(seed).digest()[32:]
    point, torsion = ed25519._decode(ed25519.public_key(seed)), ed25519._decode(SMALL_ORDER[4])
    assert point is not None
    assert torsion is not None
    public = ed25519._encode(ed25519._add(point, ed25519._cache(torsion)))
    outcomes = []
    for i in range(64):
        message = b"message %d" % i
        r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % L
        big_r = ed25519._encode(ed25519._base_mul(r))
        k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % L
        signature = big_r + ((r + k * a) % L).to_bytes(32, "little")
        ours = ed25519.verify(public, message, signature)
        assert ours == cryptography_verifies(public, message, signature)
        assert ours == (k % 8 == 0)
        outcomes.append(ours)
    assert any(outcomes)
    assert not all(outcomes)


@pytest.mark.parametrize(
    ("public_length", "signature_length"),
    [(0, 64), (31, 64), (33, 64), (64, 64), (32, 0), (32, 63), (32, 65), (32, 128), (0, 0)],
)
def test_wrong_lengths_are_rejected_without_an_exception(public_length: int, signature_length: int) -> None:
    seed = bytes(range(32))
    public, signature = ed25519.public_key(seed), ed25519.sign(seed, b"m")
    public = (public * 2)[:public_length]
    signature = (signature * 2)[:signature_length]
    assert ed25519.verify(public, b"m", signature) is False


def test_a_seed_or_public_key_of_the_wrong_length_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="seed is 32 bytes, not 31"):
        ed25519.public_key(bytes(31))
    with pytest.raises(ValueError, match="seed is 32 bytes, not 33"):
        ed25519.sign(bytes(33), b"m")
    with pytest.raises(ValueError, match="seed is 32 bytes, not 0"):
        ed25519.private_key_pem(b"")
    with pytest.raises(ValueError, match="public key is 32 bytes, not 31"):
        ed25519.public_key_der(bytes(31))


def test_the_pem_and_der_are_what_cryptography_writes_and_reads() -> None:
    seed = ed25519.generate_seed()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pem = ed25519.private_key_pem(seed)
    assert pem == key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.private_bytes_raw() == seed
    der = ed25519.public_key_der(ed25519.public_key(seed))
    assert der == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = serialization.load_der_public_key(der)
    assert isinstance(public, Ed25519PublicKey)
    assert public.public_bytes_raw() == ed25519.public_key(seed)


def self_signed_certificate(key: Ed25519PrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyhole agent")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_the_pem_loads_in_ssl_with_its_certificate(tmp_path: Path) -> None:
    seed = ed25519.generate_seed()
    key_file, cert_file, other_cert_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "other.pem"
    key_file.write_bytes(ed25519.private_key_pem(seed))
    loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    cert_file.write_bytes(self_signed_certificate(loaded))
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
    # ssl checks the key against the certificate, so the key was read as this key and not merely parsed.
    other_cert_file.write_bytes(self_signed_certificate(Ed25519PrivateKey.generate()))
    with pytest.raises(ssl.SSLError):
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(other_cert_file, key_file)
