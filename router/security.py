"""API keys: create, hash, verify, revoke; and which role may do what.

A key looks like ``trk_<prefix>_<secret>``. Only the prefix (to find the row)
and an HMAC-SHA256 of the secret under a per-key random salt are stored, so the
database never holds a usable key. The key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlmodel import Session, select

from router.db.models import ROLES, ApiKey, check_key_name, utcnow
from router.store import InvalidInput, NotFound, add_unique

KEY_TAG = "trk"

# What each permission is, and the roles that hold it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"integration", "supervisor"}),
    "read": frozenset({"integration", "agent", "supervisor"}),
    "route": frozenset({"agent", "supervisor"}),
    "compare": frozenset({"agent", "supervisor"}),
    "correct": frozenset({"supervisor"}),
    "models": frozenset({"supervisor"}),
    "keys": frozenset({"supervisor"}),
}


# What each permission lets a caller do, as said in a refusal: "the agent role may not manage API keys".
ACTIONS: dict[str, str] = {
    "intake": "take in tickets",
    "read": "read tickets",
    "route": "route complaints",
    "compare": "compare strategies",
    "correct": "correct routings",
    "models": "manage model versions and tuning jobs",
    "keys": "manage API keys",
}


def refusal(role: str, permission: str) -> str:
    """Why `role` is refused `permission`, and which roles hold it."""
    holders = " or ".join(sorted(PERMISSIONS[permission]))
    return f"the {role} role may not {ACTIONS[permission]}; that needs a key with role {holders}"


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


def hash_secret(secret: str, salt: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    parts = key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_TAG or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create_key(session: Session, name: str, role: str) -> tuple[ApiKey, str]:
    """Store a new key for `name`; returns the row and the plaintext key (shown once, never stored)."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; choose one of {', '.join(ROLES)}", "role")
    try:
        check_key_name(name)
    except ValueError as exc:
        raise InvalidInput(f"name {exc}", "name") from None
    prefix, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    row = ApiKey(name=name, role=role, prefix=prefix, salt=salt, hashed_secret=hash_secret(secret, salt))
    add_unique(session, row, f"an API key named {name!r} already exists (revoked keys keep their name)", "name")
    session.refresh(row)
    return row, f"{KEY_TAG}_{prefix}_{secret}"


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(ApiKey.id)).all())


def revoke_key(session: Session, name: str) -> ApiKey:
    """Revoke the key called `name` at once (revoking twice keeps the first time)."""
    row = session.exec(select(ApiKey).where(ApiKey.name == name)).first()
    if row is None:
        raise NotFound(f"no API key named {name!r}", "name")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.commit()
        session.refresh(row)
    return row


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live key row matching `key`, or None (unknown, malformed, wrong secret or revoked)."""
    parts = split_key(key)
    if parts is None:
        return None
    prefix, secret = parts
    for row in session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).all():
        if hmac.compare_digest(row.hashed_secret, hash_secret(secret, row.salt)):
            return None if row.revoked_at is not None else row
    return None
