"""The admin token: created on first start, rotated by ``oauthproxyctl token-admin``.

The admin token is the :class:`~oauthproxy.model.ApiToken` named ``"admin"``
with ``is_admin`` set.  Only its SHA-256 digest is stored; the value exists once,
in the return value of these functions, and the caller shows it to the operator.
Rotation replaces the stored digest, so the old value stops working at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from attrs import evolve
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.credentials import hash_token, new_token_value
from oauthproxy.config import Config
from oauthproxy.errors import Conflict
from oauthproxy.interfaces import ITokenStore
from oauthproxy.model import ADMIN_TOKEN_NAME, ApiToken
from oauthproxy.storage.crypto import SecretBox, key_from_b64, load_or_create_key
from oauthproxy.storage.embedded import redis_address
from oauthproxy.storage.redis import RedisStorage, connect_storage


def open_storage(config: Config, reactor: IReactorTime) -> RedisStorage:
    """The configured store (the embedded socket when no ``REDIS_URL``); lazy, no I/O to Redis.

    The encryption key comes from ``OAUTHPROXY_SECRET_KEY`` or ``<data_dir>/secret.key``
    (created on first use), so the daemon and ``oauthproxyctl token-admin`` agree.
    """
    os.makedirs(config.data_dir, mode=0o700, exist_ok=True)
    if config.secret_key_b64 is not None:
        key = key_from_b64(config.secret_key_b64)
    else:
        key = load_or_create_key(config.data_dir)
    address = redis_address(config)
    wait = config.redis_wait_replicas
    return connect_storage(
        address,
        SecretBox(key),
        config.redis_timeout,
        reactor,
        request_log_retention=config.request_log_retention,
        request_log_max_records=config.request_log_max_records,
        # behind Sentinel a confirmed write must survive a failover: one replica has it
        wait_replicas=wait if wait is not None else (1 if address.sentinels else 0),
    )


async def ensure_admin_token(
    tokens: ITokenStore,
    clock: IReactorTime,
    new_value: Callable[[], str] = new_token_value,
) -> str | None:
    """Create the admin token if the store has none; its value, or None if one existed."""
    if await tokens.get(ADMIN_TOKEN_NAME) is not None:
        return None
    value = new_value()
    record = ApiToken(
        name=ADMIN_TOKEN_NAME,
        token_hash=hash_token(value),
        is_admin=True,
        created_at=clock.seconds(),
    )
    try:
        await tokens.create(record)
    except Conflict:
        # Another daemon sharing this Redis created it first: theirs stands.
        return None
    return value


async def rotate_admin_token(
    tokens: ITokenStore,
    clock: IReactorTime,
    new_value: Callable[[], str] = new_token_value,
) -> str:
    """Issue a new admin token value, invalidating the old one; returns the new value."""
    value = new_value()
    existing = await tokens.get(ADMIN_TOKEN_NAME)
    if existing is None:
        await tokens.create(
            ApiToken(
                name=ADMIN_TOKEN_NAME,
                token_hash=hash_token(value),
                is_admin=True,
                created_at=clock.seconds(),
            )
        )
    else:
        await tokens.update(
            evolve(
                existing, token_hash=hash_token(value), is_admin=True, created_at=clock.seconds()
            )
        )
    return value


def announce_admin_token(value: str) -> str:
    """The one line shown to the operator when an admin token is issued."""
    return f"Admin token (shown once, store it now): {value}"
