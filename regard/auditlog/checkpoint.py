"""Signed checkpoints of the audit log: proof, kept outside the store, that the log reached an entry.

The hash chain catches any edited, deleted or reordered entry, but not the newest entries cut off
with the head row rolled back to match: from inside the database that looks like a shorter, valid
log. A checkpoint closes that gap. `regard log checkpoint` signs the head (seq, hash, time) with an
Ed25519 key that the store's writers do not hold, and appends the signed record (one JSON line) to
a file, or prints it for a third party to keep. `regard log verify --checkpoint FILE` then proves
that the log still extends every checkpoint: each signature verifies, and the entry at each
checkpoint's seq is still there with the same hash, inside a chain that verifies.

    regard log keygen ~/.config/regard/audit-signing.pem     # once; keep it away from the database
    regard log checkpoint --key ~/.config/regard/audit-signing.pem --out /backup/regard.checkpoints
    regard log verify --checkpoint /backup/regard.checkpoints
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from regard.errors import InvalidArgumentError

VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the audit log had `seq` entries, the last with `hash`, at `time`."""

    seq: int
    hash: str
    time: str
    public_key: str  # the Ed25519 public key, raw, hex
    signature: str  # over `message()`, hex
    version: int = VERSION

    def message(self) -> bytes:
        """The signed bytes: canonical JSON of what the checkpoint states."""
        body = {"version": self.version, "seq": self.seq, "hash": self.hash, "time": self.time}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def generate_key(path: Path) -> str:
    """Write a new Ed25519 private key (PEM, readable by its owner only); its public key, hex."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path.exists():
        raise InvalidArgumentError(f"{path} exists already: a signing key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return _public_hex(key)


def load_key(path: Path) -> Any:
    """The Ed25519 private key at `path`; InvalidArgumentError saying what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise InvalidArgumentError(f"no signing key at {path}: make one with `regard log keygen {path}`") from None
    except ValueError as exc:
        raise InvalidArgumentError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgumentError(f"{path} is not an Ed25519 key")
    return key


def _public_hex(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign_head(store: Any, key_path: Path) -> Checkpoint:
    """A checkpoint of the store's audit head, after checking that the chain verifies (a broken
    log is never vouched for)."""
    report = store.verify_audit()
    if not report.ok:
        raise InvalidArgumentError("the audit log does not verify: no checkpoint is signed for it (regard log verify)")
    if report.head_seq == 0:
        raise InvalidArgumentError("the audit log is empty: there is nothing to checkpoint yet")
    key = load_key(key_path)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    unsigned = Checkpoint(report.head_seq, report.head_hash, when, _public_hex(key), "")
    return Checkpoint(unsigned.seq, unsigned.hash, unsigned.time, unsigned.public_key, key.sign(unsigned.message()).hex())


def append(path: Path, checkpoint: Checkpoint) -> None:
    """Add the checkpoint to a file of them, one JSON line each (made if missing), and sync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(checkpoint.to_line() + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> list[Checkpoint]:
    """The checkpoints of a file; InvalidArgumentError naming the line that is not one."""
    found = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidArgumentError(f"no checkpoint file at {path}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            found.append(
                Checkpoint(
                    seq=int(data["seq"]), hash=str(data["hash"]), time=str(data["time"]),
                    public_key=str(data["public_key"]), signature=str(data["signature"]),
                    version=int(data.get("version", VERSION)),
                )  # fmt: skip
            )
        except (ValueError, KeyError, TypeError):
            raise InvalidArgumentError(f"{path}, line {number}: not a checkpoint") from None
    return found


def verify(store: Any, checkpoints: list[Checkpoint], *, public_key: str | None = None) -> list[str]:
    """What is wrong between the store's audit log and the checkpoints (empty: the log extends
    every one). `public_key` (hex), if given, is the only key whose checkpoints are accepted."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    problems: list[str] = []
    report = store.verify_audit()
    if not report.ok:
        problems.append("the audit log's chain does not verify (regard log verify says where)")
    hashes = {e.seq: e.hash for e in store.audit_entries()} if checkpoints else {}
    for c in checkpoints:
        name = f"checkpoint of entry #{c.seq} ({c.time})"
        if public_key is not None and c.public_key != public_key:
            problems.append(f"{name}: signed by another key ({c.public_key[:16]}...)")
            continue
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(c.public_key)).verify(bytes.fromhex(c.signature), c.message())
        except (InvalidSignature, ValueError):
            problems.append(f"{name}: the signature does not verify (the checkpoint was altered)")
            continue
        if c.seq > report.head_seq:
            problems.append(f"{name}: the log now ends at entry #{report.head_seq}; entries were cut off")
        elif hashes.get(c.seq) != c.hash:
            problems.append(f"{name}: entry #{c.seq} is no longer the one signed (the log was rewritten)")
    return problems
