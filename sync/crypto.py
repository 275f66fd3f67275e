"""ODK encrypted submissions, both ways: RSA key pairs for forms, private keys sealed at rest,
and the per-submission envelope (AES-256-CFB files, RSA-OAEP wrapped key, element signature)
that ODK Collect produces and Diiwaan decrypts, byte for byte as Collect and Briefcase do it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "SUBMISSION_NAMESPACE",
    "CryptoError",
    "DecryptedSubmission",
    "EncryptedSubmission",
    "InvalidKeyError",
    "MalformedEncryptedSubmissionError",
    "SignatureMismatchError",
    "WrongKeyError",
    "decrypt_submission",
    "encrypt_submission",
    "fingerprint",
    "generate_key_pair",
    "load_private_key_pem",
    "load_public_key",
    "open_private_key",
    "public_key_base64",
    "seal_private_key",
]

SUBMISSION_NAMESPACE = "http://opendatakit.org/submissions"
OPENROSA_NAMESPACE = "http://openrosa.org/xforms"

RSA_KEY_BITS = 2048
AES_KEY_BYTES = 32
AES_BLOCK_BYTES = 16
ENCRYPTED_SUFFIX = ".enc"
# The signature always names the submission XML like this, whatever the .enc file is called:
# Collect renames the instance to submission.xml before encrypting it, and Briefcase checks
# against that name.
SUBMISSION_XML_NAME = "submission.xml"

# Collect (Bouncy Castle "RSA/NONE/OAEPWithSHA256AndMGF1Padding") uses SHA-256 for both;
# Enketo's web encryptor (node-forge) keeps MGF1 on SHA-1.
_OAEP_MGF1_SHA256 = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
_OAEP_MGF1_SHA1 = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA1()),  # noqa: S303 (Enketo's mask function, decrypt only)
    algorithm=hashes.SHA256(),
    label=None,
)
_OAEP_PADDINGS = (_OAEP_MGF1_SHA256, _OAEP_MGF1_SHA1)

# Sealed private key layout: MAGIC | KEK id (8) | HKDF salt (16) | GCM nonce (12) | ciphertext+tag.
_SEALED_MAGIC = b"diiwaan-sealed-rsa-key:v1\n"
_KEK_ID_BYTES = 8
_SEAL_SALT_BYTES = 16
_SEAL_NONCE_BYTES = 12
_SEAL_HEADER_BYTES = len(_SEALED_MAGIC) + _KEK_ID_BYTES + _SEAL_SALT_BYTES + _SEAL_NONCE_BYTES
_MIN_KEK_BYTES = 32


class CryptoError(Exception):
    """Base of every error this module raises on purpose."""


class InvalidKeyError(CryptoError):
    """Key material that cannot be read: not PEM/DER/base64, not RSA, a too-short
    key-encryption key, or a sealed private key that is truncated or corrupted."""


class WrongKeyError(CryptoError):
    """The key is well formed but is not the one the data was encrypted for."""


class MalformedEncryptedSubmissionError(CryptoError):
    """The encrypted submission is structurally broken: bad base64, a missing or duplicated
    file, a file that is not whole AES blocks or whose padding is wrong after decryption."""

    def __init__(self, message: str, *, file_name: str | None = None) -> None:
        super().__init__(message)
        self.file_name = file_name


class SignatureMismatchError(CryptoError):
    """Every file decrypted, but the element signature does not match what was decrypted.

    The signature covers all files at once, so it cannot say which one changed;
    `recomputed_md5s` lists the plaintext name and MD5 of each file as decrypted here (for
    comparison with the device's copy), and `suspect_file` names the submission XML when it
    does not even decrypt to XML (its first block garbled: wrong order or tampered).
    """

    def __init__(
        self,
        message: str,
        *,
        recomputed_md5s: Sequence[tuple[str, str]] = (),
        suspect_file: str | None = None,
    ) -> None:
        super().__init__(message)
        self.recomputed_md5s = tuple(recomputed_md5s)
        self.suspect_file = suspect_file


@dataclass(frozen=True, slots=True)
class EncryptedSubmission:
    """What a device posts for one encrypted submission.

    `manifest_xml` is the `xml_submission_file` part; `files` are the attachment parts,
    media `.enc` files in order and then `submission.xml.enc`.
    """

    manifest_xml: bytes
    files: list[tuple[str, bytes]]
    base64_encrypted_key: str
    base64_signature: str
    encrypted_xml_file: str = SUBMISSION_XML_NAME + ENCRYPTED_SUFFIX


@dataclass(frozen=True, slots=True)
class DecryptedSubmission:
    """The plaintext submission XML and media files (names without `.enc`), in manifest order."""

    xml: bytes
    media: list[tuple[str, bytes]]


# --- Key pairs ---------------------------------------------------------------------------


def generate_key_pair() -> rsa.RSAPrivateKey:
    """A new RSA-2048 key pair, the size the ODK ecosystem uses for form encryption."""
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def _as_public_key(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> rsa.RSAPublicKey:
    return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key


def _public_key_der(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    return _as_public_key(key).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_base64(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """Base64 of the DER SubjectPublicKeyInfo: the value for the XLSForm `public_key` setting
    and the XForm `base64RsaPublicKey` attribute."""
    return base64.b64encode(_public_key_der(key)).decode("ascii")


def fingerprint(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """SHA-256 hex of the public key's DER: a stable id for key rotation records."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(_public_key_der(key))
    return digest.finalize().hex()


def load_public_key(base64_or_pem: str) -> rsa.RSAPublicKey:
    """Read an RSA public key given as PEM or as the bare base64 DER that forms carry."""
    text = base64_or_pem.strip()
    try:
        if text.startswith("-----BEGIN"):
            loaded = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            loaded = serialization.load_der_public_key(der)
    except (UnicodeEncodeError, binascii.Error, ValueError) as error:
        raise InvalidKeyError(
            "public key is neither PEM nor base64 of a DER SubjectPublicKeyInfo "
            f"({_describe(error)})"
        ) from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise InvalidKeyError(
            f"public key is {type(loaded).__name__}; ODK encryption needs an RSA key"
        )
    return loaded


def load_private_key_pem(data: bytes, password: bytes | None) -> rsa.RSAPrivateKey:
    """Read an RSA private key from PEM (PKCS#8 or PKCS#1, encrypted or not), such as the
    one `openssl genrsa` makes for an ODK form."""
    try:
        loaded = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        # cryptography says TypeError when a password is missing or superfluous.
        if password is None:
            raise WrongKeyError("private key PEM is encrypted; a password is required") from None
        raise WrongKeyError("private key PEM is not encrypted, but a password was given") from None
    except ValueError as error:
        if password is not None and b"ENCRYPTED" in data:
            raise WrongKeyError("wrong password for the private key PEM") from None
        raise InvalidKeyError(f"private key is not a readable PEM ({_describe(error)})") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise InvalidKeyError(
            f"private key is {type(loaded).__name__}; ODK encryption needs an RSA key"
        )
    return loaded


# --- Private keys at rest ----------------------------------------------------------------
#
# AES-256-GCM over the PKCS#8 DER, with the AES key derived by HKDF-SHA256 from the
# key-encryption key (KEK) and a per-seal random salt, rather than BestAvailableEncryption:
# - the KEK is a random secret from configuration, not a passphrase, so a slow password KDF
#   (PBKDF2/scrypt) buys nothing and would cost time on every open;
# - GCM authenticates the whole blob, header included, and the format is pinned here instead
#   of following whatever "best available" means in the next cryptography release;
# - the header carries a short HKDF-derived id of the KEK, so a wrong KEK ("sealed under
#   another KEK") is told apart from a corrupted blob, which helps during KEK rotation.


def _check_kek(key_encryption_key: bytes) -> None:
    if len(key_encryption_key) < _MIN_KEK_BYTES:
        raise InvalidKeyError(
            f"key-encryption key is {len(key_encryption_key)} bytes; it must be at least "
            f"{_MIN_KEK_BYTES} random bytes (for example secrets.token_bytes(32))"
        )


def _kek_id(key_encryption_key: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=_KEK_ID_BYTES,
        salt=None,
        info=b"diiwaan key-encryption-key id v1",
    ).derive(key_encryption_key)


def _sealing_key(key_encryption_key: bytes, salt: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=AES_KEY_BYTES,
        salt=salt,
        info=b"diiwaan sealed private key v1",
    ).derive(key_encryption_key)


def seal_private_key(key: rsa.RSAPrivateKey, key_encryption_key: bytes) -> bytes:
    """Encrypt a private key for storage under the configured key-encryption key."""
    _check_kek(key_encryption_key)
    salt = os.urandom(_SEAL_SALT_BYTES)
    nonce = os.urandom(_SEAL_NONCE_BYTES)
    header = _SEALED_MAGIC + _kek_id(key_encryption_key) + salt + nonce
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sealed = AESGCM(_sealing_key(key_encryption_key, salt)).encrypt(nonce, pkcs8, header)
    return header + sealed


def open_private_key(sealed: bytes, key_encryption_key: bytes) -> rsa.RSAPrivateKey:
    """Decrypt a key made by `seal_private_key`.

    Raises WrongKeyError when it was sealed under another KEK and InvalidKeyError when the
    blob is not a sealed key or has been damaged.
    """
    _check_kek(key_encryption_key)
    if not sealed.startswith(_SEALED_MAGIC):
        raise InvalidKeyError("sealed private key does not start with the Diiwaan v1 header")
    if len(sealed) <= _SEAL_HEADER_BYTES:
        raise InvalidKeyError(f"sealed private key is truncated ({len(sealed)} bytes)")
    offset = len(_SEALED_MAGIC)
    stored_kek_id = sealed[offset : offset + _KEK_ID_BYTES]
    offset += _KEK_ID_BYTES
    salt = sealed[offset : offset + _SEAL_SALT_BYTES]
    offset += _SEAL_SALT_BYTES
    nonce = sealed[offset : offset + _SEAL_NONCE_BYTES]
    header = sealed[:_SEAL_HEADER_BYTES]
    given_kek_id = _kek_id(key_encryption_key)
    if not hmac.compare_digest(stored_kek_id, given_kek_id):
        raise WrongKeyError(
            f"private key was sealed under another key-encryption key "
            f"(KEK id {stored_kek_id.hex()}; the configured KEK has id {given_kek_id.hex()})"
        )
    try:
        pkcs8 = AESGCM(_sealing_key(key_encryption_key, salt)).decrypt(
            nonce, sealed[_SEAL_HEADER_BYTES:], header
        )
    except InvalidTag:
        raise InvalidKeyError(
            "sealed private key is corrupted: its authentication tag does not match "
            "under the right key-encryption key"
        ) from None
    loaded = serialization.load_der_private_key(pkcs8, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise InvalidKeyError(f"sealed key is {type(loaded).__name__}, not an RSA private key")
    return loaded


# --- Shared pieces of the submission format ----------------------------------------------


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _md5(data: bytes) -> bytes:
    # The ODK format fixes MD5 for IV seeds, file digests and the element signature.
    digest = hashes.Hash(hashes.MD5())  # noqa: S303
    digest.update(data)
    return digest.finalize()


def _iv_sequence(instance_id: str, aes_key: bytes) -> Iterator[bytes]:
    """The IV for each file in turn: the seed MD5(instanceID + key) with byte i % 16 bumped
    (wrapping at 256) before file i; the bumps accumulate, exactly as Collect's getCipher()."""
    seed = bytearray(_md5(instance_id.encode("utf-8") + aes_key))
    file_index = 0
    while True:
        position = file_index % AES_BLOCK_BYTES
        seed[position] = (seed[position] + 1) & 0xFF
        file_index += 1
        yield bytes(seed)


def _signature_digest(
    *,
    form_id: str,
    form_version: str | None,
    base64_encrypted_key: str,
    instance_id: str,
    file_md5s: Sequence[tuple[str, str]],
) -> bytes:
    """MD5 of the element signature text; `file_md5s` is media in order, then the XML."""
    lines = [form_id]
    if form_version is not None:
        lines.append(form_version)
    lines.append(base64_encrypted_key)
    lines.append(instance_id)
    lines.extend(f"{name}::{md5_hex}" for name, md5_hex in file_md5s)
    return _md5("".join(f"{line}\n" for line in lines).encode("utf-8"))


def _aes_cfb(aes_key: bytes, iv: bytes) -> Cipher[CFB]:
    return Cipher(algorithms.AES(aes_key), CFB(iv))


# --- Encryption (what Collect does on the device) ----------------------------------------


def _encrypt_file(aes_key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    pad_length = AES_BLOCK_BYTES - len(plaintext) % AES_BLOCK_BYTES
    encryptor = _aes_cfb(aes_key, iv).encryptor()
    ciphertext = encryptor.update(plaintext + bytes([pad_length]) * pad_length)
    return ciphertext + encryptor.finalize()


def _check_media_names(media: Sequence[tuple[str, bytes]]) -> None:
    seen: set[str] = set()
    for name, _content in media:
        if not name or "/" in name or "\\" in name:
            raise ValueError(f"media file name {name!r} must be a bare, non-empty file name")
        if name == SUBMISSION_XML_NAME:
            raise ValueError(f"media file cannot be called {SUBMISSION_XML_NAME!r}")
        if name in seen:
            raise ValueError(f"media file {name!r} appears twice")
        seen.add(name)


def _manifest_xml(
    *,
    form_id: str,
    form_version: str | None,
    instance_id: str,
    base64_encrypted_key: str,
    encrypted_media_names: Sequence[str],
    encrypted_xml_file: str,
    base64_signature: str,
) -> bytes:
    def text(value: str) -> str:
        return html.escape(value, quote=True)

    version_attribute = "" if form_version is None else f' version="{text(form_version)}"'
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<data xmlns="{SUBMISSION_NAMESPACE}" id="{text(form_id)}"{version_attribute}'
        ' encrypted="yes">\n',
        f"  <base64EncryptedKey>{base64_encrypted_key}</base64EncryptedKey>\n",
        f"  <encryptedXmlFile>{text(encrypted_xml_file)}</encryptedXmlFile>\n",
    ]
    # One <media> per file, as Collect writes it; readers that expect Enketo's layout or a
    # single <media> both find every <file>.
    parts.extend(f"  <media><file>{text(name)}</file></media>\n" for name in encrypted_media_names)
    parts.extend(
        [
            f"  <base64EncryptedElementSignature>{base64_signature}"
            "</base64EncryptedElementSignature>\n",
            f'  <meta xmlns="{OPENROSA_NAMESPACE}"><instanceID>{text(instance_id)}'
            "</instanceID></meta>\n",
            "</data>\n",
        ]
    )
    return "".join(parts).encode("utf-8")


def encrypt_submission(
    *,
    xml: bytes,
    media: Sequence[tuple[str, bytes]],
    instance_id: str,
    form_id: str,
    form_version: str | None,
    public_key: rsa.RSAPublicKey,
) -> EncryptedSubmission:
    """Encrypt a submission exactly as ODK Collect does, for the reference client and tests.

    `media` is (file name, content) in the order the manifest lists them; `instance_id` is the
    meta/instanceID value with its `uuid:` prefix; `form_version` None means the form has no
    version (no version attribute and no version line in the signature).
    """
    if not instance_id:
        raise ValueError("instance ID is required to encrypt a submission")
    if not form_id:
        raise ValueError("form ID is required to encrypt a submission")
    _check_media_names(media)

    aes_key = os.urandom(AES_KEY_BYTES)
    base64_encrypted_key = base64.b64encode(public_key.encrypt(aes_key, _OAEP_MGF1_SHA256)).decode(
        "ascii"
    )
    ivs = _iv_sequence(instance_id, aes_key)

    files: list[tuple[str, bytes]] = []
    file_md5s: list[tuple[str, str]] = []
    for name, content in [*media, (SUBMISSION_XML_NAME, xml)]:
        files.append((name + ENCRYPTED_SUFFIX, _encrypt_file(aes_key, next(ivs), content)))
        file_md5s.append((name, _md5(content).hex()))

    signature_digest = _signature_digest(
        form_id=form_id,
        form_version=form_version,
        base64_encrypted_key=base64_encrypted_key,
        instance_id=instance_id,
        file_md5s=file_md5s,
    )
    base64_signature = base64.b64encode(
        public_key.encrypt(signature_digest, _OAEP_MGF1_SHA256)
    ).decode("ascii")
    encrypted_xml_file = SUBMISSION_XML_NAME + ENCRYPTED_SUFFIX
    manifest = _manifest_xml(
        form_id=form_id,
        form_version=form_version,
        instance_id=instance_id,
        base64_encrypted_key=base64_encrypted_key,
        encrypted_media_names=[name for name, _content in files[:-1]],
        encrypted_xml_file=encrypted_xml_file,
        base64_signature=base64_signature,
    )
    return EncryptedSubmission(
        manifest_xml=manifest,
        files=files,
        base64_encrypted_key=base64_encrypted_key,
        base64_signature=base64_signature,
        encrypted_xml_file=encrypted_xml_file,
    )


# --- Decryption (what the server does) ---------------------------------------------------


def _decode_base64(value: str, element: str) -> bytes:
    # Old Collect builds wrapped base64 at 76 columns, so whitespace is dropped first.
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise MalformedEncryptedSubmissionError(
            f"{element} is not valid base64 ({_describe(error)})"
        ) from None


def _rsa_decrypt(
    private_key: rsa.RSAPrivateKey,
    ciphertext: bytes,
    paddings: Sequence[padding.OAEP],
) -> tuple[bytes, padding.OAEP] | None:
    for oaep in paddings:
        try:
            return private_key.decrypt(ciphertext, oaep), oaep
        except ValueError:
            continue
    return None


def _decrypt_file(aes_key: bytes, iv: bytes, name: str, ciphertext: bytes) -> bytes:
    return b"".join(_decrypt_chunks(aes_key, iv, name, [ciphertext]))


def _decrypt_chunks(
    aes_key: bytes, iv: bytes, name: str, ciphertext: Iterable[bytes]
) -> Iterator[bytes | memoryview]:
    """The plaintext of one file, chunk by chunk as its ciphertext arrives, holding back
    only the last block until the end, where its PKCS#7 padding is checked and removed
    (so a file of any size is decrypted in constant memory)."""
    decryptor = _aes_cfb(aes_key, iv).decryptor()
    size = 0
    held = b""  # the last block so far
    for chunk in ciphertext:
        size += len(chunk)
        plain = decryptor.update(chunk)
        if len(plain) < AES_BLOCK_BYTES:  # small chunks are gathered up to a block
            plain, held = held + plain, b""
            if len(plain) < AES_BLOCK_BYTES:
                held = plain
                continue
        if held:
            yield held
        view = memoryview(plain)  # slices of it are not copies
        if len(view) > AES_BLOCK_BYTES:
            yield view[:-AES_BLOCK_BYTES]
        held = bytes(view[-AES_BLOCK_BYTES:])
    decryptor.finalize()
    if not size:
        raise MalformedEncryptedSubmissionError(f"{name} is empty", file_name=name)
    if size % AES_BLOCK_BYTES:
        raise MalformedEncryptedSubmissionError(
            f"{name} is {size} bytes, not a whole number of "
            f"{AES_BLOCK_BYTES}-byte AES blocks (truncated?)",
            file_name=name,
        )
    pad_length = held[-1]
    if not (1 <= pad_length <= AES_BLOCK_BYTES and held.endswith(bytes([pad_length]) * pad_length)):
        raise MalformedEncryptedSubmissionError(
            f"{name} has invalid PKCS#7 padding after decryption "
            "(its last blocks were altered, or it belongs to another submission)",
            file_name=name,
        )
    yield held[:-pad_length]


def _looks_like_xml(document: bytes) -> bool:
    return document.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _split_files(
    encrypted_files: Sequence[tuple[str, bytes]], encrypted_xml_file: str
) -> tuple[list[tuple[str, bytes]], bytes]:
    """Media (.enc name, ciphertext) in the given order, and the encrypted submission XML."""
    seen: set[str] = set()
    media: list[tuple[str, bytes]] = []
    xml_ciphertext: bytes | None = None
    for name, ciphertext in encrypted_files:
        if name in seen:
            raise MalformedEncryptedSubmissionError(
                f"file {name} appears twice in the submission", file_name=name
            )
        seen.add(name)
        if name == encrypted_xml_file:
            xml_ciphertext = ciphertext
        elif not name.endswith(ENCRYPTED_SUFFIX) or name == ENCRYPTED_SUFFIX:
            raise MalformedEncryptedSubmissionError(
                f"media file {name} does not end in {ENCRYPTED_SUFFIX}", file_name=name
            )
        else:
            media.append((name, ciphertext))
    if xml_ciphertext is None:
        raise MalformedEncryptedSubmissionError(
            f"encrypted submission XML {encrypted_xml_file} is missing from the files",
            file_name=encrypted_xml_file,
        )
    return media, xml_ciphertext


def _unwrap_aes_key(
    private_key: rsa.RSAPrivateKey, base64_encrypted_key: str
) -> tuple[bytes, padding.OAEP]:
    """The submission's AES key, unwrapped from base64EncryptedKey, and the OAEP padding
    that unwrapped it (the device signs with the same)."""
    wrapped_key = _decode_base64(base64_encrypted_key, "base64EncryptedKey")
    modulus_bytes = (private_key.key_size + 7) // 8
    if len(wrapped_key) != modulus_bytes:
        if len(wrapped_key) >= 128 and len(wrapped_key) % 64 == 0:
            raise WrongKeyError(
                f"base64EncryptedKey was wrapped by an RSA-{len(wrapped_key) * 8} key; "
                f"this private key (fingerprint {fingerprint(private_key)}) is "
                f"RSA-{private_key.key_size}"
            )
        raise MalformedEncryptedSubmissionError(
            f"base64EncryptedKey is {len(wrapped_key)} bytes; an RSA-{private_key.key_size} "
            f"key wraps to {modulus_bytes} (truncated?)"
        )
    unwrapped = _rsa_decrypt(private_key, wrapped_key, _OAEP_PADDINGS)
    if unwrapped is None:
        raise WrongKeyError(
            "base64EncryptedKey does not decrypt with this private key "
            f"(fingerprint {fingerprint(private_key)}) under RSA-OAEP with MGF1-SHA-256 or "
            "MGF1-SHA-1: the submission was encrypted for another key"
        )
    aes_key, key_padding = unwrapped
    if len(aes_key) != AES_KEY_BYTES:
        raise MalformedEncryptedSubmissionError(
            f"the unwrapped AES key is {len(aes_key)} bytes, expected {AES_KEY_BYTES}"
        )
    return aes_key, key_padding


def decrypt_submission(
    *,
    form_id: str,
    form_version: str | None,
    instance_id: str,
    base64_encrypted_key: str,
    base64_signature: str | None,
    encrypted_files: Sequence[tuple[str, bytes]],
    encrypted_xml_file: str,
    private_key: rsa.RSAPrivateKey,
) -> DecryptedSubmission:
    """Decrypt and verify one encrypted submission from its manifest fields and files.

    `encrypted_files` holds the media `.enc` files in manifest order plus the XML file named
    by `encrypted_xml_file` (anywhere in the list: it is always decrypted last). The element
    signature is checked when `base64_signature` is given; None means the manifest had none
    and the contents are returned unverified.

    Raises WrongKeyError if the AES key does not unwrap with this private key,
    MalformedEncryptedSubmissionError for bad base64, missing files or bad padding, and
    SignatureMismatchError if the signature does not match the decrypted files. Callers
    should not echo padding-versus-signature detail to unauthenticated clients: telling
    the two apart for arbitrary ciphertexts is a padding oracle.
    """
    media_ciphertexts, xml_ciphertext = _split_files(encrypted_files, encrypted_xml_file)
    aes_key, key_padding = _unwrap_aes_key(private_key, base64_encrypted_key)

    ivs = _iv_sequence(instance_id, aes_key)
    media: list[tuple[str, bytes]] = []
    for name, ciphertext in media_ciphertexts:
        plain_name = name[: -len(ENCRYPTED_SUFFIX)]
        media.append((plain_name, _decrypt_file(aes_key, next(ivs), name, ciphertext)))
    xml = _decrypt_file(aes_key, next(ivs), encrypted_xml_file, xml_ciphertext)

    if base64_signature is not None:
        _verify_signature(
            private_key=private_key,
            key_padding=key_padding,
            base64_signature=base64_signature,
            form_id=form_id,
            form_version=form_version,
            base64_encrypted_key=base64_encrypted_key,
            instance_id=instance_id,
            media=media,
            xml=xml,
        )
    return DecryptedSubmission(xml=xml, media=media)


class MediaFileDecryptor:
    """One media file of a submission, decrypted without the others: the `index`-th
    `.enc` file in manifest order (the IV of file i depends on i alone). The AES key is
    unwrapped once, on creation (raising WrongKeyError or
    MalformedEncryptedSubmissionError as `decrypt_submission`); `decrypt` then streams
    the plaintext of the ciphertext it is given, as often as asked.

    Nothing here verifies the file: the element signature covers every file together, so
    a caller that needs this one's integrity compares it with a digest it kept when the
    whole submission was decrypted and verified (`decrypt_submission`)."""

    def __init__(
        self,
        *,
        instance_id: str,
        base64_encrypted_key: str,
        index: int,
        name: str,
        private_key: rsa.RSAPrivateKey,
    ) -> None:
        if index < 0:
            raise ValueError(f"a file's index in the manifest is 0 or more, not {index}")
        self.name = name
        self._aes_key, _padding = _unwrap_aes_key(private_key, base64_encrypted_key)
        ivs = _iv_sequence(instance_id, self._aes_key)
        for _earlier in range(index):
            next(ivs)
        self._iv = next(ivs)

    def decrypt(self, ciphertext: Iterable[bytes]) -> Iterator[bytes | memoryview]:
        """The plaintext, chunk by chunk; MalformedEncryptedSubmissionError at the end for
        a file that is empty, not whole blocks, or badly padded."""
        return _decrypt_chunks(self._aes_key, self._iv, self.name, ciphertext)


def _verify_signature(
    *,
    private_key: rsa.RSAPrivateKey,
    key_padding: padding.OAEP,
    base64_signature: str,
    form_id: str,
    form_version: str | None,
    base64_encrypted_key: str,
    instance_id: str,
    media: Sequence[tuple[str, bytes]],
    xml: bytes,
) -> None:
    file_md5s = [(name, _md5(content).hex()) for name, content in media]
    file_md5s.append((SUBMISSION_XML_NAME, _md5(xml).hex()))
    recomputed = ", ".join(f"{name}::{md5_hex}" for name, md5_hex in file_md5s)
    suspect_file = None if _looks_like_xml(xml) else SUBMISSION_XML_NAME
    suspect_note = (
        f"; {SUBMISSION_XML_NAME} does not decrypt to XML (files out of order or its "
        "first block altered)"
        if suspect_file
        else ""
    )

    wrapped_signature = _decode_base64(base64_signature, "base64EncryptedElementSignature")
    # The device signs with the same padding it wrapped the key with; try that one first.
    paddings = [key_padding, *(oaep for oaep in _OAEP_PADDINGS if oaep is not key_padding)]
    unwrapped = _rsa_decrypt(private_key, wrapped_signature, paddings)
    if unwrapped is None:
        raise SignatureMismatchError(
            f"base64EncryptedElementSignature of instance {instance_id} does not decrypt "
            "with the private key that unwrapped its AES key",
            recomputed_md5s=file_md5s,
            suspect_file=suspect_file,
        )
    signed_digest, _padding = unwrapped
    expected_digest = _signature_digest(
        form_id=form_id,
        form_version=form_version,
        base64_encrypted_key=base64_encrypted_key,
        instance_id=instance_id,
        file_md5s=file_md5s,
    )
    if not hmac.compare_digest(signed_digest, expected_digest):
        raise SignatureMismatchError(
            f"element signature of instance {instance_id} does not match the decrypted "
            f"files or manifest fields (form ID {form_id!r}, form version {form_version!r}); "
            f"recomputed {recomputed}{suspect_note}",
            recomputed_md5s=file_md5s,
            suspect_file=suspect_file,
        )
