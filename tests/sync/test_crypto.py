"""Specifications for sync.crypto: ODK encrypted submissions both ways, and keys at rest.

The decryptor is checked against vectors built here step by step from raw `cryptography`
primitives, so a mistake shared by encrypt_submission and decrypt_submission cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, replace

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from defusedxml import ElementTree

from sync.crypto import (
    SUBMISSION_NAMESPACE,
    DecryptedSubmission,
    InvalidKeyError,
    MalformedEncryptedSubmissionError,
    MediaFileDecryptor,
    SignatureMismatchError,
    WrongKeyError,
    decrypt_submission,
    encrypt_submission,
    fingerprint,
    generate_key_pair,
    load_private_key_pem,
    load_public_key,
    open_private_key,
    public_key_base64,
    seal_private_key,
)

OPENROSA = "{http://openrosa.org/xforms}"
NS = "{" + SUBMISSION_NAMESPACE + "}"

INSTANCE_ID = "uuid:6f1c2e8a-3b7d-4c59-9e0a-2d4f8b1c7a90"
FORM_ID = "household_registration"
FORM_VERSION = "2025061201"
HOUSEHOLD_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<data id="{FORM_ID}" version="{FORM_VERSION}">'
    "<household><head_name>Faadumo Cabdi Xasan</head_name><village>Ceerigaabo</village>"
    "<members>6</members></household>"
    f"<meta><instanceID>{INSTANCE_ID}</instanceID></meta></data>"
).encode()
PHOTO = bytes(range(48))  # three whole blocks: PKCS#7 adds a full block of 0x10
AUDIO = b"AMR-audio-" * 4  # 40 bytes: PKCS#7 adds eight 0x08


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return generate_key_pair()


# --- Raw ODK encryption, step by step, independent of sync.crypto -------------------------


def raw_md5(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.MD5())  # noqa: S303 (fixed by the ODK format)
    digest.update(data)
    return digest.finalize()


def raw_oaep(mgf_hash: hashes.HashAlgorithm) -> asym_padding.OAEP:
    return asym_padding.OAEP(
        mgf=asym_padding.MGF1(algorithm=mgf_hash), algorithm=hashes.SHA256(), label=None
    )


OAEP_COLLECT = raw_oaep(hashes.SHA256())
OAEP_ENKETO = raw_oaep(hashes.SHA1())  # noqa: S303 (Enketo's MGF1 hash)


def raw_ivs(instance_id: str, aes_key: bytes, file_count: int) -> list[bytes]:
    seed = bytearray(raw_md5(instance_id.encode("utf-8") + aes_key))
    ivs = []
    for index in range(file_count):
        seed[index % 16] = (seed[index % 16] + 1) % 256
        ivs.append(bytes(seed))
    return ivs


def raw_cfb_encrypt(aes_key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), CFB(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def raw_cfb_decrypt(aes_key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(aes_key), CFB(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def raw_signature_text(
    form_id: str,
    form_version: str | None,
    base64_encrypted_key: str,
    instance_id: str,
    plain_files: list[tuple[str, bytes]],
) -> str:
    lines = [form_id, *([form_version] if form_version is not None else [])]
    lines += [base64_encrypted_key, instance_id]
    lines += [
        f"{name}::{hashlib.md5(content, usedforsecurity=False).hexdigest()}"
        for name, content in plain_files
    ]
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class RawVector:
    form_id: str
    form_version: str | None
    instance_id: str
    base64_encrypted_key: str
    base64_signature: str
    encrypted_files: list[tuple[str, bytes]]
    ivs: list[bytes]

    def decrypt(self, key: rsa.RSAPrivateKey, **changes: object) -> DecryptedSubmission:
        arguments: dict[str, object] = {
            "form_id": self.form_id,
            "form_version": self.form_version,
            "instance_id": self.instance_id,
            "base64_encrypted_key": self.base64_encrypted_key,
            "base64_signature": self.base64_signature,
            "encrypted_files": self.encrypted_files,
            "encrypted_xml_file": "submission.xml.enc",
            "private_key": key,
        }
        arguments.update(changes)
        return decrypt_submission(**arguments)  # type: ignore[arg-type]


def build_raw_vector(
    public_key: rsa.RSAPublicKey,
    *,
    aes_key: bytes,
    media: list[tuple[str, bytes]],
    xml: bytes = HOUSEHOLD_XML,
    form_version: str | None = FORM_VERSION,
    oaep: asym_padding.OAEP = OAEP_COLLECT,
) -> RawVector:
    base64_encrypted_key = base64.b64encode(public_key.encrypt(aes_key, oaep)).decode()
    plain_files = [*media, ("submission.xml", xml)]
    ivs = raw_ivs(INSTANCE_ID, aes_key, len(plain_files))
    encrypted_files = [
        (name + ".enc", raw_cfb_encrypt(aes_key, iv, content))
        for (name, content), iv in zip(plain_files, ivs, strict=True)
    ]
    signature_text = raw_signature_text(
        FORM_ID, form_version, base64_encrypted_key, INSTANCE_ID, plain_files
    )
    signature = public_key.encrypt(raw_md5(signature_text.encode("utf-8")), oaep)
    return RawVector(
        form_id=FORM_ID,
        form_version=form_version,
        instance_id=INSTANCE_ID,
        base64_encrypted_key=base64_encrypted_key,
        base64_signature=base64.b64encode(signature).decode(),
        encrypted_files=encrypted_files,
        ivs=ivs,
    )


def aes_key_with_seed_byte(position: int, value: int) -> bytes:
    """A deterministic AES key whose IV seed MD5(instanceID + key) has `value` at `position`."""
    for counter in range(1 << 16):
        candidate = hashlib.sha256(b"diiwaan test key %d" % counter).digest()
        if raw_md5(INSTANCE_ID.encode() + candidate)[position] == value:
            return candidate
    raise AssertionError("no key found")


FIXED_AES_KEY = bytes(range(100, 132))


@pytest.fixture(scope="module")
def vector(private_key: rsa.RSAPrivateKey) -> RawVector:
    return build_raw_vector(
        private_key.public_key(),
        aes_key=FIXED_AES_KEY,
        media=[("photo.jpg", PHOTO), ("audio.amr", AUDIO)],
    )


def with_file(vector: RawVector, name: str, content: bytes) -> RawVector:
    files = [(n, content if n == name else c) for n, c in vector.encrypted_files]
    return replace(vector, encrypted_files=files)


def flip_byte(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def file_content(vector: RawVector, name: str) -> bytes:
    return dict(vector.encrypted_files)[name]


# --- Decrypting raw vectors ---------------------------------------------------------------


def test_decrypts_raw_vector_with_two_media_and_a_seed_byte_wrapping_from_ff_to_00(
    private_key: rsa.RSAPrivateKey,
) -> None:
    aes_key = aes_key_with_seed_byte(1, 0xFF)
    vector = build_raw_vector(
        private_key.public_key(),
        aes_key=aes_key,
        media=[("photo.jpg", PHOTO), ("audio.amr", AUDIO)],
    )
    seed = raw_md5(INSTANCE_ID.encode() + aes_key)
    # The vector really exercises accumulation and the wrap: the second media file's IV has
    # byte 0 still bumped from the first file and byte 1 wrapped from 0xFF to 0x00.
    assert vector.ivs[1][0] == (seed[0] + 1) % 256
    assert vector.ivs[1][1] == 0x00
    assert vector.ivs[2][2] == (seed[2] + 1) % 256

    decrypted = vector.decrypt(private_key)

    assert decrypted == DecryptedSubmission(
        xml=HOUSEHOLD_XML, media=[("photo.jpg", PHOTO), ("audio.amr", AUDIO)]
    )


def test_decrypts_raw_vector_with_seventeen_files_where_iv_byte_zero_is_bumped_twice(
    private_key: rsa.RSAPrivateKey,
) -> None:
    media = [(f"member_{index:02d}.jpg", bytes([index]) * (20 + index)) for index in range(16)]
    vector = build_raw_vector(private_key.public_key(), aes_key=FIXED_AES_KEY, media=media)
    seed = raw_md5(INSTANCE_ID.encode() + FIXED_AES_KEY)
    assert vector.ivs[16][0] == (seed[0] + 2) % 256

    decrypted = vector.decrypt(private_key)

    assert decrypted.media == media
    assert decrypted.xml == HOUSEHOLD_XML


def decrypt_one(vector: RawVector, private_key: rsa.RSAPrivateKey, index: int, name: str) -> bytes:
    decryptor = MediaFileDecryptor(
        instance_id=vector.instance_id,
        base64_encrypted_key=vector.base64_encrypted_key,
        index=index,
        name=name,
        private_key=private_key,
    )
    return b"".join(decryptor.decrypt([file_content(vector, name)]))


def test_one_media_file_decrypts_alone_with_the_iv_of_its_place_in_the_manifest(
    private_key: rsa.RSAPrivateKey,
) -> None:
    """How the server serves a photo without decrypting the rest: the 17-file vector's
    last media file needs the IV bumped sixteen times, byte 0 twice."""
    media = [(f"member_{index:02d}.jpg", bytes([index]) * (20 + index)) for index in range(16)]
    vector = build_raw_vector(private_key.public_key(), aes_key=FIXED_AES_KEY, media=media)

    for index in (0, 1, 15):
        name, content = media[index]
        assert decrypt_one(vector, private_key, index, name + ".enc") == content
    # Another file's IV garbles the first block (CFB recovers after it): only a digest kept
    # from the verified decryption can tell, which is what the server compares.
    wrong = decrypt_one(vector, private_key, 0, "member_01.jpg.enc")
    assert wrong != media[1][1] and wrong[16:] == media[1][1][16:]


@pytest.mark.parametrize("size", [1, 7, 16, 17, 1000])
def test_one_media_file_streams_in_chunks_of_any_size(
    private_key: rsa.RSAPrivateKey, vector: RawVector, size: int
) -> None:
    """Decrypted as its ciphertext is read, the last block held back for its padding."""
    decryptor = MediaFileDecryptor(
        instance_id=vector.instance_id,
        base64_encrypted_key=vector.base64_encrypted_key,
        index=1,
        name="audio.amr.enc",
        private_key=private_key,
    )
    ciphertext = file_content(vector, "audio.amr.enc")
    chunks = [ciphertext[start : start + size] for start in range(0, len(ciphertext), size)]
    assert b"".join(decryptor.decrypt(chunks)) == AUDIO
    assert b"".join(decryptor.decrypt(iter(chunks))) == AUDIO  # as often as asked
    pieces = decryptor.decrypt(chunks[:-1])  # the last piece never comes
    with pytest.raises(MalformedEncryptedSubmissionError, match="audio.amr.enc"):
        b"".join(pieces)


def test_one_media_file_with_another_key_or_a_negative_index_is_refused(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    with pytest.raises(WrongKeyError, match="encrypted for another key"):
        decrypt_one(vector, generate_key_pair(), 0, "photo.jpg.enc")
    with pytest.raises(ValueError, match="0 or more"):
        decrypt_one(vector, private_key, -1, "photo.jpg.enc")
    truncated = with_file(vector, "audio.amr.enc", file_content(vector, "audio.amr.enc")[:-3])
    with pytest.raises(MalformedEncryptedSubmissionError, match="audio.amr.enc is 45 bytes"):
        decrypt_one(truncated, private_key, 1, "audio.amr.enc")


def test_decrypts_enketo_submission_wrapped_with_mgf1_sha1(
    private_key: rsa.RSAPrivateKey,
) -> None:
    vector = build_raw_vector(
        private_key.public_key(),
        aes_key=FIXED_AES_KEY,
        media=[("photo.jpg", PHOTO)],
        oaep=OAEP_ENKETO,
    )

    decrypted = vector.decrypt(private_key)

    assert decrypted.media == [("photo.jpg", PHOTO)]
    assert decrypted.xml == HOUSEHOLD_XML


def test_submission_xml_is_decrypted_last_wherever_it_is_listed(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    xml_first = [vector.encrypted_files[-1], *vector.encrypted_files[:-1]]

    decrypted = vector.decrypt(private_key, encrypted_files=xml_first)

    assert decrypted.xml == HOUSEHOLD_XML
    assert decrypted.media == [("photo.jpg", PHOTO), ("audio.amr", AUDIO)]


def test_missing_signature_returns_contents_unverified(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    decrypted = vector.decrypt(private_key, base64_signature=None, form_id="another_form")

    assert decrypted.xml == HOUSEHOLD_XML


# --- Errors -------------------------------------------------------------------------------


def test_wrong_private_key_raises_wrong_key_error_naming_its_fingerprint(
    vector: RawVector,
) -> None:
    other_key = generate_key_pair()

    with pytest.raises(WrongKeyError) as raised:
        vector.decrypt(other_key)

    assert str(raised.value) == (
        "base64EncryptedKey does not decrypt with this private key "
        f"(fingerprint {fingerprint(other_key)}) under RSA-OAEP with MGF1-SHA-256 or "
        "MGF1-SHA-1: the submission was encrypted for another key"
    )


def test_key_wrapped_for_a_larger_rsa_key_raises_wrong_key_error(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    rsa_4096_sized = base64.b64encode(bytes(512)).decode()

    with pytest.raises(WrongKeyError, match=r"wrapped by an RSA-4096 key; .* is RSA-2048"):
        vector.decrypt(private_key, base64_encrypted_key=rsa_4096_sized)


def test_tampered_media_ciphertext_raises_signature_mismatch_with_recomputed_md5s(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    tampered = with_file(
        vector, "photo.jpg.enc", flip_byte(file_content(vector, "photo.jpg.enc"), 5)
    )

    with pytest.raises(SignatureMismatchError) as raised:
        tampered.decrypt(private_key)

    error = raised.value
    assert [name for name, _md5 in error.recomputed_md5s] == [
        "photo.jpg",
        "audio.amr",
        "submission.xml",
    ]
    md5s = dict(error.recomputed_md5s)
    assert md5s["photo.jpg"] != hashlib.md5(PHOTO, usedforsecurity=False).hexdigest()
    assert md5s["audio.amr"] == hashlib.md5(AUDIO, usedforsecurity=False).hexdigest()
    assert md5s["submission.xml"] == hashlib.md5(HOUSEHOLD_XML, usedforsecurity=False).hexdigest()
    assert error.suspect_file is None
    assert str(error).startswith(
        f"element signature of instance {INSTANCE_ID} does not match the decrypted files or "
        f"manifest fields (form ID '{FORM_ID}', form version '{FORM_VERSION}'); "
        f"recomputed photo.jpg::{md5s['photo.jpg']}, audio.amr::{md5s['audio.amr']}, "
        f"submission.xml::{md5s['submission.xml']}"
    )


def test_swapped_media_files_raise_signature_mismatch(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    photo, audio = file_content(vector, "photo.jpg.enc"), file_content(vector, "audio.amr.enc")
    swapped = with_file(with_file(vector, "photo.jpg.enc", audio), "audio.amr.enc", photo)

    with pytest.raises(
        SignatureMismatchError, match="does not match the decrypted files"
    ) as raised:
        swapped.decrypt(private_key)

    md5s = dict(raised.value.recomputed_md5s)
    assert md5s["photo.jpg"] != hashlib.md5(PHOTO, usedforsecurity=False).hexdigest()
    assert md5s["audio.amr"] != hashlib.md5(AUDIO, usedforsecurity=False).hexdigest()


def test_submission_xml_swapped_with_a_media_file_is_named_as_suspect(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    photo, xml = file_content(vector, "photo.jpg.enc"), file_content(vector, "submission.xml.enc")
    swapped = with_file(with_file(vector, "photo.jpg.enc", xml), "submission.xml.enc", photo)

    with pytest.raises(SignatureMismatchError) as raised:
        swapped.decrypt(private_key)

    assert raised.value.suspect_file == "submission.xml"
    assert str(raised.value).endswith(
        "; submission.xml does not decrypt to XML (files out of order or its first block altered)"
    )


@pytest.mark.parametrize(
    ("changed_field", "value"),
    [
        ("form_id", "household_registration_v2"),
        ("form_version", None),
        ("form_version", "2025061202"),
        ("instance_id", "uuid:00000000-0000-4000-8000-000000000000"),
    ],
)
def test_manifest_field_differing_from_what_was_signed_raises_signature_mismatch(
    private_key: rsa.RSAPrivateKey, vector: RawVector, changed_field: str, value: str | None
) -> None:
    with pytest.raises(SignatureMismatchError, match="does not match the decrypted files"):
        vector.decrypt(private_key, **{changed_field: value})


def test_signature_that_does_not_decrypt_raises_signature_mismatch(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    garbage = base64.b64encode(bytes(range(256))).decode()

    with pytest.raises(SignatureMismatchError) as raised:
        vector.decrypt(private_key, base64_signature=garbage)

    assert str(raised.value) == (
        f"base64EncryptedElementSignature of instance {INSTANCE_ID} does not decrypt with the "
        "private key that unwrapped its AES key"
    )


def test_altered_last_byte_raises_malformed_padding_naming_the_file(
    private_key: rsa.RSAPrivateKey, vector: RawVector
) -> None:
    # PHOTO fills whole blocks, so its last plaintext block is sixteen 0x10 bytes; flipping the
    # last ciphertext bit makes the final pad byte 0x11, which is never valid.
    photo = file_content(vector, "photo.jpg.enc")
    tampered = with_file(vector, "photo.jpg.enc", flip_byte(photo, len(photo) - 1))

    with pytest.raises(MalformedEncryptedSubmissionError) as raised:
        tampered.decrypt(private_key)

    assert raised.value.file_name == "photo.jpg.enc"
    assert str(raised.value) == (
        "photo.jpg.enc has invalid PKCS#7 padding after decryption (its last blocks were "
        "altered, or it belongs to another submission)"
    )


@pytest.mark.parametrize(
    ("change", "message", "file_name"),
    [
        (
            {"encrypted_xml_file": "instance.xml.enc"},
            "encrypted submission XML instance.xml.enc is missing from the files",
            "instance.xml.enc",
        ),
        (
            {"base64_encrypted_key": "not base64!"},
            "base64EncryptedKey is not valid base64",
            None,
        ),
        (
            {"base64_encrypted_key": base64.b64encode(bytes(100)).decode()},
            "base64EncryptedKey is 100 bytes; an RSA-2048 key wraps to 256 (truncated?)",
            None,
        ),
        (
            {"base64_signature": "%%%"},
            "base64EncryptedElementSignature is not valid base64",
            None,
        ),
    ],
)
def test_malformed_manifest_fields_raise_malformed_naming_what_is_wrong(
    private_key: rsa.RSAPrivateKey,
    vector: RawVector,
    change: dict[str, str],
    message: str,
    file_name: str | None,
) -> None:
    with pytest.raises(MalformedEncryptedSubmissionError) as raised:
        vector.decrypt(private_key, **change)

    assert str(raised.value).startswith(message)
    assert raised.value.file_name == file_name


@pytest.mark.parametrize(
    ("files", "message", "file_name"),
    [
        (
            lambda files: [(name, content[:-3]) for name, content in files],
            "photo.jpg.enc is 61 bytes, not a whole number of 16-byte AES blocks (truncated?)",
            "photo.jpg.enc",
        ),
        (
            lambda files: [(name, b"" if name == "audio.amr.enc" else c) for name, c in files],
            "audio.amr.enc is empty",
            "audio.amr.enc",
        ),
        (
            lambda files: [("photo.jpg", files[0][1]), *files[1:]],
            "media file photo.jpg does not end in .enc",
            "photo.jpg",
        ),
        (
            lambda files: [files[0], *files],
            "file photo.jpg.enc appears twice in the submission",
            "photo.jpg.enc",
        ),
    ],
    ids=["truncated", "empty", "no-enc-suffix", "duplicate"],
)
def test_malformed_files_raise_malformed_naming_the_file(
    private_key: rsa.RSAPrivateKey,
    vector: RawVector,
    files: object,
    message: str,
    file_name: str,
) -> None:
    assert callable(files)

    with pytest.raises(MalformedEncryptedSubmissionError) as raised:
        vector.decrypt(private_key, encrypted_files=files(vector.encrypted_files))

    assert str(raised.value) == message
    assert raised.value.file_name == file_name


# --- Encrypting (the reference client) ----------------------------------------------------


def test_round_trip_restores_unicode_xml_and_media(private_key: rsa.RSAPrivateKey) -> None:
    xml = (
        "<data id='qoys'><magaca>Xaawo Maxamed Ciise</magaca>"
        "<note>عائلة من ستة أفراد — ✓</note>"
        f"<meta><instanceID>{INSTANCE_ID}</instanceID></meta></data>"
    ).encode()
    media = [("sawirka_qoyska_ü.jpg", b"\xff\xd8\xff" + bytes(1000)), ("cod.amr", b"#!AMR\n")]

    encrypted = encrypt_submission(
        xml=xml,
        media=media,
        instance_id=INSTANCE_ID,
        form_id="diiwaan_qoys",
        form_version="2025-06-ü",
        public_key=private_key.public_key(),
    )
    decrypted = decrypt_submission(
        form_id="diiwaan_qoys",
        form_version="2025-06-ü",
        instance_id=INSTANCE_ID,
        base64_encrypted_key=encrypted.base64_encrypted_key,
        base64_signature=encrypted.base64_signature,
        encrypted_files=encrypted.files,
        encrypted_xml_file=encrypted.encrypted_xml_file,
        private_key=private_key,
    )

    assert decrypted == DecryptedSubmission(xml=xml, media=media)


def test_round_trip_of_a_several_megabyte_photo(private_key: rsa.RSAPrivateKey) -> None:
    photo = hashlib.shake_256(b"large photo").digest(5 * 1024 * 1024 + 7)

    encrypted = encrypt_submission(
        xml=HOUSEHOLD_XML,
        media=[("photo.jpg", photo)],
        instance_id=INSTANCE_ID,
        form_id=FORM_ID,
        form_version=FORM_VERSION,
        public_key=private_key.public_key(),
    )
    decrypted = decrypt_submission(
        form_id=FORM_ID,
        form_version=FORM_VERSION,
        instance_id=INSTANCE_ID,
        base64_encrypted_key=encrypted.base64_encrypted_key,
        base64_signature=encrypted.base64_signature,
        encrypted_files=encrypted.files,
        encrypted_xml_file="submission.xml.enc",
        private_key=private_key,
    )

    assert decrypted.media == [("photo.jpg", photo)]


def test_each_encryption_uses_a_fresh_aes_key(private_key: rsa.RSAPrivateKey) -> None:
    def unwrapped_key_and_xml_ciphertext() -> tuple[bytes, bytes]:
        encrypted = encrypt_submission(
            xml=HOUSEHOLD_XML,
            media=[],
            instance_id=INSTANCE_ID,
            form_id=FORM_ID,
            form_version=FORM_VERSION,
            public_key=private_key.public_key(),
        )
        wrapped = base64.b64decode(encrypted.base64_encrypted_key)
        return private_key.decrypt(wrapped, OAEP_COLLECT), encrypted.files[-1][1]

    first_key, first_xml = unwrapped_key_and_xml_ciphertext()
    second_key, second_xml = unwrapped_key_and_xml_ciphertext()

    assert first_key != second_key
    assert first_xml != second_xml


def test_encrypted_files_follow_collect_and_decrypt_with_raw_primitives(
    private_key: rsa.RSAPrivateKey,
) -> None:
    media = [("photo.jpg", PHOTO), ("audio.amr", AUDIO)]

    encrypted = encrypt_submission(
        xml=HOUSEHOLD_XML,
        media=media,
        instance_id=INSTANCE_ID,
        form_id=FORM_ID,
        form_version=FORM_VERSION,
        public_key=private_key.public_key(),
    )

    assert [name for name, _content in encrypted.files] == [
        "photo.jpg.enc",
        "audio.amr.enc",
        "submission.xml.enc",
    ]
    aes_key = private_key.decrypt(base64.b64decode(encrypted.base64_encrypted_key), OAEP_COLLECT)
    assert len(aes_key) == 32
    ivs = raw_ivs(INSTANCE_ID, aes_key, 3)
    plaintexts = [
        raw_cfb_decrypt(aes_key, iv, content)
        for (_name, content), iv in zip(encrypted.files, ivs, strict=True)
    ]
    assert plaintexts == [PHOTO, AUDIO, HOUSEHOLD_XML]
    signed = private_key.decrypt(base64.b64decode(encrypted.base64_signature), OAEP_COLLECT)
    signature_text = raw_signature_text(
        FORM_ID,
        FORM_VERSION,
        encrypted.base64_encrypted_key,
        INSTANCE_ID,
        [*media, ("submission.xml", HOUSEHOLD_XML)],
    )
    assert signed == raw_md5(signature_text.encode())


def test_form_without_version_has_no_version_line_in_signature_or_attribute(
    private_key: rsa.RSAPrivateKey,
) -> None:
    encrypted = encrypt_submission(
        xml=HOUSEHOLD_XML,
        media=[],
        instance_id=INSTANCE_ID,
        form_id=FORM_ID,
        form_version=None,
        public_key=private_key.public_key(),
    )

    signed = private_key.decrypt(base64.b64decode(encrypted.base64_signature), OAEP_COLLECT)
    xml_md5 = hashlib.md5(HOUSEHOLD_XML, usedforsecurity=False).hexdigest()
    expected_text = (
        f"{FORM_ID}\n{encrypted.base64_encrypted_key}\n{INSTANCE_ID}\nsubmission.xml::{xml_md5}\n"
    )
    assert signed == raw_md5(expected_text.encode())
    assert "version" not in ElementTree.fromstring(encrypted.manifest_xml).attrib


def test_manifest_lists_key_files_signature_and_instance_id(
    private_key: rsa.RSAPrivateKey,
) -> None:
    encrypted = encrypt_submission(
        xml=HOUSEHOLD_XML,
        media=[("photo.jpg", PHOTO), ("audio.amr", AUDIO)],
        instance_id=INSTANCE_ID,
        form_id=FORM_ID,
        form_version=FORM_VERSION,
        public_key=private_key.public_key(),
    )

    manifest = ElementTree.fromstring(encrypted.manifest_xml)
    assert manifest.tag == f"{NS}data"
    assert manifest.attrib == {"id": FORM_ID, "version": FORM_VERSION, "encrypted": "yes"}
    assert manifest.findtext(f"{NS}base64EncryptedKey") == encrypted.base64_encrypted_key
    assert manifest.findtext(f"{NS}encryptedXmlFile") == "submission.xml.enc"
    assert [file.text for file in manifest.iter(f"{NS}file")] == [
        "photo.jpg.enc",
        "audio.amr.enc",
    ]
    assert manifest.findtext(f"{NS}base64EncryptedElementSignature") == encrypted.base64_signature
    assert manifest.findtext(f"{OPENROSA}meta/{OPENROSA}instanceID") == INSTANCE_ID


def test_manifest_escapes_markup_in_form_id(private_key: rsa.RSAPrivateKey) -> None:
    form_id = 'roster<&>"quoted"'

    encrypted = encrypt_submission(
        xml=HOUSEHOLD_XML,
        media=[],
        instance_id=INSTANCE_ID,
        form_id=form_id,
        form_version=None,
        public_key=private_key.public_key(),
    )

    manifest = ElementTree.fromstring(encrypted.manifest_xml)
    assert manifest.get("id") == form_id
    assert list(manifest.iter(f"{NS}media")) == []


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ([("photo.jpg", b"a"), ("photo.jpg", b"b")], "media file 'photo.jpg' appears twice"),
        ([("submission.xml", b"a")], "media file cannot be called 'submission.xml'"),
        ([("../photo.jpg", b"a")], "must be a bare, non-empty file name"),
    ],
)
def test_encrypt_rejects_media_names_that_would_break_the_manifest(
    private_key: rsa.RSAPrivateKey, media: list[tuple[str, bytes]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encrypt_submission(
            xml=HOUSEHOLD_XML,
            media=media,
            instance_id=INSTANCE_ID,
            form_id=FORM_ID,
            form_version=None,
            public_key=private_key.public_key(),
        )


# --- Key pairs ----------------------------------------------------------------------------


def test_generated_key_pair_is_rsa_2048(private_key: rsa.RSAPrivateKey) -> None:
    assert private_key.key_size == 2048


def test_public_key_base64_is_der_subject_public_key_info_that_load_public_key_reads(
    private_key: rsa.RSAPrivateKey,
) -> None:
    encoded = public_key_base64(private_key.public_key())

    der_key = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
    assert isinstance(der_key, rsa.RSAPublicKey)
    assert der_key.public_numbers() == private_key.public_key().public_numbers()
    assert load_public_key(encoded).public_numbers() == der_key.public_numbers()
    assert public_key_base64(private_key) == encoded


def test_load_public_key_accepts_pem_and_line_wrapped_base64(
    private_key: rsa.RSAPrivateKey,
) -> None:
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = public_key_base64(private_key)
    wrapped = "\n".join(encoded[start : start + 64] for start in range(0, len(encoded), 64))

    expected = private_key.public_key().public_numbers()
    assert load_public_key(pem.decode()).public_numbers() == expected
    assert load_public_key(wrapped).public_numbers() == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "public key is neither PEM nor base64"),
        (base64.b64encode(b"DER? no").decode(), "public key is neither PEM nor base64"),
        ("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----", "neither PEM"),
    ],
)
def test_load_public_key_rejects_unreadable_text(text: str, message: str) -> None:
    with pytest.raises(InvalidKeyError, match=message):
        load_public_key(text)


def test_load_public_key_rejects_non_rsa_keys() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(InvalidKeyError, match="ODK encryption needs an RSA key"):
        load_public_key(ec_pem.decode())


def test_fingerprint_is_sha256_hex_of_der_for_either_half_of_the_pair(
    private_key: rsa.RSAPrivateKey,
) -> None:
    der = base64.b64decode(public_key_base64(private_key))

    assert fingerprint(private_key.public_key()) == hashlib.sha256(der).hexdigest()
    assert fingerprint(private_key) == fingerprint(private_key.public_key())


def test_load_private_key_pem_reads_password_protected_pkcs8(
    private_key: rsa.RSAPrivateKey,
) -> None:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"field office"),
    )

    loaded = load_private_key_pem(pem, b"field office")

    assert loaded.private_numbers() == private_key.private_numbers()


@pytest.mark.parametrize(
    ("encrypted_with", "password", "error", "message"),
    [
        (b"field office", b"wrong", WrongKeyError, "wrong password for the private key PEM"),
        (b"field office", None, WrongKeyError, "private key PEM is encrypted; a password"),
        (None, b"extra", WrongKeyError, "not encrypted, but a password was given"),
    ],
)
def test_load_private_key_pem_reports_password_problems(
    private_key: rsa.RSAPrivateKey,
    encrypted_with: bytes | None,
    password: bytes | None,
    error: type[Exception],
    message: str,
) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if encrypted_with is None
        else serialization.BestAvailableEncryption(encrypted_with)
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )

    with pytest.raises(error, match=message):
        load_private_key_pem(pem, password)


def test_load_private_key_pem_rejects_garbage() -> None:
    with pytest.raises(InvalidKeyError, match="private key is not a readable PEM"):
        load_private_key_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----", None)


# --- Private keys at rest -----------------------------------------------------------------

KEK = bytes(range(32))
OTHER_KEK = bytes(range(1, 33))


def test_sealed_private_key_opens_with_the_same_kek(private_key: rsa.RSAPrivateKey) -> None:
    sealed = seal_private_key(private_key, KEK)

    assert open_private_key(sealed, KEK).private_numbers() == private_key.private_numbers()
    pkcs8 = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert pkcs8[-64:] not in sealed
    assert seal_private_key(private_key, KEK) != sealed


def test_sealed_private_key_with_wrong_kek_raises_wrong_key_error(
    private_key: rsa.RSAPrivateKey,
) -> None:
    sealed = seal_private_key(private_key, KEK)

    with pytest.raises(WrongKeyError, match="sealed under another key-encryption key"):
        open_private_key(sealed, OTHER_KEK)


def test_corrupted_sealed_private_key_raises_invalid_key_error(
    private_key: rsa.RSAPrivateKey,
) -> None:
    sealed = seal_private_key(private_key, KEK)

    with pytest.raises(InvalidKeyError, match="sealed private key is corrupted"):
        open_private_key(flip_byte(sealed, len(sealed) - 40), KEK)
    with pytest.raises(InvalidKeyError, match="does not start with the Diiwaan v1 header"):
        open_private_key(b"-----BEGIN PRIVATE KEY-----", KEK)
    with pytest.raises(InvalidKeyError, match="truncated"):
        open_private_key(sealed[:40], KEK)


def test_short_key_encryption_key_is_refused(private_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(
        InvalidKeyError, match="key-encryption key is 16 bytes; it must be at least 32"
    ):
        seal_private_key(private_key, bytes(16))
