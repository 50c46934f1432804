"""Connecting to the hive's Redis: retries while it is down, clear words when it refuses us."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import redis
from borg_common.backoff import ExponentialBackoff
from loguru import logger
from redis.backoff import NoBackoff
from redis.retry import Retry


def redis_location(url: str) -> str:
    """host:port/db of a redis:// URL: where it points, without its credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


def _auth_problem(url: str, error: redis.RedisError, setting: str = "CONFIG_redis_url") -> str | None:
    where = redis_location(url)
    has_password = bool(urlsplit(url).password)
    text = str(error)
    if isinstance(error, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        if not has_password:
            return (
                f"Redis at {where} requires a password: set {setting}=redis://:PASSWORD@{where} "
                "(compose: REDIS_PASSWORD in .env)"
            )
        return f"Redis at {where} rejected the password in {setting}"
    if "NOPERM" in text:
        return f"Redis at {where}: the user in {setting} lacks a permission ({text})"
    return None


def redis_problem(url: str, setting: str = "CONFIG_redis_url") -> str | None:
    """Why Redis at `url` (from `setting`) cannot be used right now (a message a person can act on), or None."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        return _auth_problem(url, error, setting) or f"Redis at {redis_location(url)} is not usable: {error}"
    finally:
        client.close()
    return None


class RedisRefusedError(RuntimeError):
    """Redis answers but will not let us in; retrying cannot help."""


def connect_redis(url: str, stop: threading.Event) -> redis.Redis:
    """Connect, retrying with backoff while Redis is unreachable, until a stop is requested.

    Raises RedisRefusedError at once for a missing or wrong password.
    """
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
    backoff = ExponentialBackoff(initial=0.5, maximum=10.0)
    while True:
        try:
            client.ping()
            return client
        except redis.ConnectionError as error:
            problem = _auth_problem(url, error)
            if problem:
                raise RedisRefusedError(problem) from None
            delay = backoff.failed()
            logger.warning("Redis at {} not reachable ({}); retrying in {:.1f}s", redis_location(url), error, delay)
        except redis.ResponseError as error:
            problem = _auth_problem(url, error)
            raise RedisRefusedError(problem or f"Redis at {redis_location(url)}: {error}") from None
        if stop.wait(backoff.delay()):
            raise RedisRefusedError("stopped while waiting for Redis")


def open_read_replica(url: str) -> redis.Redis:
    """A client on the read replica of CONFIG_redis_read_url, for the mirror's pulls.

    Raises RedisRefusedError when the replica refuses the password. An unreachable replica
    is only logged: the mirror pulls from it once it answers. Failures come back at once
    (one reconnect, no backoff) so that a replica that is down never stalls the agent's loop.
    """
    client = redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=2, retry=Retry(NoBackoff(), 1), health_check_interval=30
    )
    try:
        client.ping()
    except redis.RedisError as error:
        problem = _auth_problem(url, error, "CONFIG_redis_read_url")
        if problem:
            raise RedisRefusedError(problem) from None
        logger.warning(
            "read replica at {} not reachable ({}); the mirror pulls once it answers", redis_location(url), error
        )
    return client
