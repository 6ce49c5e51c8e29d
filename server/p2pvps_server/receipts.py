"""Signed wipe receipts: parse what a device reports and verify its OpenSSH signature (ssh-keygen -Y verify).

A receipt is the exact JSON text the device signed (sorted keys, no spaces) and an armored SSH
signature in the namespace `p2pvps-wipe-receipt`, made with the device's receipt key (ed25519),
which the device reports at its check-ins. Anyone holding the text, the signature and the
device's public key verifies it offline with the command `verify_command()` gives.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

NAMESPACE = "p2pvps-wipe-receipt"
KIND = "p2pvps-wipe-receipt"
MAX_RECEIPT_LEN = 4096
MAX_SIGNATURE_LEN = 2048
MAX_RECEIPTS = 8
VERIFY_TIMEOUT_S = 10
LEASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
FIELDS = {"kind", "format", "lease_id", "device_id", "containers", "volumes", "disk_image", "bytes",
          "wiped_at", "reason"}
SIGNATURE_RE = re.compile(r"^-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+-----END SSH SIGNATURE-----\n?$")


class ReceiptRefused(ValueError):
    """A receipt that is not stored, with the error code the device is told."""

    def __init__(self, error: str, lease_id: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.lease_id = lease_id


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def parse(text: str) -> dict[str, Any]:
    """The receipt's fields; refused unless it is canonical JSON of the expected shape."""
    try:
        fields = json.loads(text)
    except ValueError:
        raise ReceiptRefused("malformed_receipt") from None
    if not isinstance(fields, dict) or set(fields) != FIELDS or fields.get("kind") != KIND \
            or fields.get("format") != 1:
        raise ReceiptRefused("malformed_receipt")
    lease_id = fields["lease_id"]
    if not isinstance(lease_id, str) or not LEASE_ID_RE.fullmatch(lease_id):
        raise ReceiptRefused("malformed_receipt")
    try:
        same = canonical(fields) == text
    except ValueError:
        same = False
    if not same:
        raise ReceiptRefused("malformed_receipt", lease_id)
    return fields


def principal(device_id: str) -> str:
    return device_id


def allowed_signers(device_id: str, public_key: str) -> str:
    """The allowed_signers line that lets `ssh-keygen -Y verify` check this device's receipts only."""
    return f'{principal(device_id)} namespaces="{NAMESPACE}" {public_key}'


def verify_command(device_id: str) -> str:
    return (f"ssh-keygen -Y verify -f allowed_signers -I {principal(device_id)} -n {NAMESPACE} "
            "-s receipt.json.sig < receipt.json")


def verify(device_id: str, public_key: str, text: str, signature: str) -> bool:
    """Whether `signature` is the device's signature of `text` (ssh-keygen -Y verify).

    Raises OSError when ssh-keygen cannot run (the receipt is then neither stored nor refused).
    """
    if not SIGNATURE_RE.fullmatch(signature):
        return False
    with tempfile.TemporaryDirectory(prefix="p2pvps-receipt-") as tmp:
        signers = Path(tmp, "allowed_signers")
        signers.write_text(allowed_signers(device_id, public_key) + "\n", encoding="ascii")
        sig = Path(tmp, "receipt.sig")
        sig.write_text(signature, encoding="ascii")
        try:
            proc = subprocess.run(
                ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", principal(device_id), "-n", NAMESPACE,
                 "-s", str(sig)],
                input=text.encode("ascii"), capture_output=True, timeout=VERIFY_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OSError("ssh-keygen -Y verify timed out") from exc
        return proc.returncode == 0
