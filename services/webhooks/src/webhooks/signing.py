"""Signing secrets and signatures.

Each endpoint has a Standard Webhooks secret (`whsec_` + base64 of 32 random bytes), shown to
the customer once and stored encrypted with Fernet (WEBHOOKS_ENCRYPTION_KEY; a previous key
still decrypts while keys rotate). Every attempt is signed with the `standardwebhooks`
library: `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`, and during a
secret rotation's grace period with the old secret too (two space-separated signatures).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class SecretBox:
    """Encrypts secrets for the database and decrypts them to sign."""

    def __init__(self, key: str, previous_keys: Sequence[str] = ()) -> None:
        self._fernet = MultiFernet(
            [Fernet(key.encode()), *(Fernet(k.encode()) for k in previous_keys)]
        )

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "a signing secret cannot be decrypted with WEBHOOKS_ENCRYPTION_KEY"
            ) from None


def headers(message_id: str, body: str, at: datetime, secrets_: Sequence[str]) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with each secret (newest first)."""
    signatures = " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body) for secret in secrets_
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }
