"""Patient data encrypted before it reaches Temporal: an AES-256-GCM payload codec with key rotation.

Everything the engine records (start input, Update arguments and results, activity inputs, Query
results, failure messages) passes through this codec, so Temporal's database, its Web UI and its
CLI only ever see ciphertext. Each payload names the key that sealed it (`encryption-key-id`), so
adding a key (rotation) never strands older payloads: new payloads use the newest key, old ones
decrypt with theirs. Payloads that were never encrypted (histories recorded before the codec)
pass through decode unchanged, so in-flight pathways keep replaying.

Keys are lines `id:base64-of-32-bytes`, oldest first, in `PATHWAYS_ENCRYPTION_KEYS_FILE`, in
`PATHWAYS_ENCRYPTION_KEYS`, or for the embedded default in `<data_dir>/encryption.keys`, which
`pathways setup` and `pathways up` create (mode 0600). No key ever lives in the repository.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from pathways.errors import CommandFailed
from pathways.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeysUnavailable(CommandFailed):
    """The encryption keys are missing or malformed: a one-line message, never key material."""


@dataclass(frozen=True)
class Keyring:
    """Encryption keys by id, oldest first; the last one seals new payloads."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeysUnavailable("no encryption key configured")
        ids = [key_id for key_id, _ in self.keys]
        if len(set(ids)) != len(ids):
            raise KeysUnavailable("encryption key ids must be unique")

    @property
    def newest(self) -> tuple[str, bytes]:
        return self.keys[-1]

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """Lines (or commas) of `id:base64`; blank lines and `#` comments are skipped.

        Errors name the source and line only, never the line's content (it may be a key).
        """
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip().startswith("#"):
                continue
            for entry in filter(None, (part.strip() for part in line.split(","))):
                entries.append(_parse_entry(entry, f"{source}, line {number}"))
        if not entries:
            raise KeysUnavailable(f"{source} holds no encryption key")
        return cls(tuple(entries))


def _parse_entry(line: str, where: str) -> tuple[str, bytes]:
    key_id, separator, encoded = line.partition(":")
    key_id = key_id.strip()
    if not separator or not _KEY_ID_PATTERN.match(key_id):
        raise KeysUnavailable(f"{where}: expected id:base64key (id of letters, digits, . _ -)")
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeysUnavailable(f"{where}: the key must be base64 of {KEY_BYTES} random bytes")
    return key_id, key


def new_key_line(key_id: str) -> str:
    """A fresh `id:base64` line for a keys file."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def load_keyring(settings: Settings) -> Keyring:
    """The configured keys; a clear KeysUnavailable (one line, no key material) when missing."""
    if settings.encryption_keys is not None:
        return Keyring.parse(settings.encryption_keys.get_secret_value(), "PATHWAYS_ENCRYPTION_KEYS")
    path = settings.encryption_keys_path
    try:
        text = path.read_text()
    except FileNotFoundError:
        hint = (
            "run `pathways setup` to create one"
            if settings.encryption_keys_file is None
            else "copy the installation's keys file there"
        )
        raise KeysUnavailable(
            f"no encryption keys file at {path}: {hint}, or set PATHWAYS_ENCRYPTION_KEYS_FILE"
        ) from None
    except OSError as error:
        raise KeysUnavailable(f"cannot read encryption keys file {path}: {error.strerror}") from None
    return Keyring.parse(text, str(path))


def ensure_default_keys(settings: Settings) -> Path | None:
    """Create the embedded default's keys file (0600 in a 0700 data dir) if none is configured
    or present; returns the path when it was created. Configured keys are never generated: a
    worker with its own key would write payloads no other process can read."""
    if settings.encryption_keys is not None or settings.encryption_keys_file is not None:
        return None
    path = settings.encryption_keys_path
    if path.exists():
        return None
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as keys:
        keys.write(
            "# Pathway Orchestrator payload encryption keys: id:base64 (32 bytes), oldest first.\n"
            "# Rotate by appending a new line; never delete a key while histories use it.\n"
            f"{new_key_line('k1')}\n"
        )
    return path


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) readable by the owner only; tighten it if it exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole payload (metadata and data), random 96-bit nonce per payload."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys}
        self._newest_id = keyring.newest[0]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._newest_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._newest_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """Unencrypted payloads pass through (histories recorded before encryption)."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(f"payload sealed with unknown encryption key id {key_id!r}")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise ValueError(f"payload does not authenticate with key {key_id!r}") from None
        return Payload.FromString(plain)


def encrypted_converter(keyring: Keyring) -> DataConverter:
    """The pydantic converter every pathway payload needs, sealed by the codec; failure messages
    and stack traces are moved into (encrypted) payloads too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def data_converter(settings: Settings) -> DataConverter:
    """The one data converter of worker, API and CLI clients for these settings."""
    return encrypted_converter(load_keyring(settings))

