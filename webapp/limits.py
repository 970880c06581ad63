"""Request-rate limits (Flask-Limiter on Redis, keys under REDIS_PREFIX).

API_RATE_LIMIT holds for the whole API and for each state-changing route of the
pages (sign-out, tokens, an email's actions...). The limit is per user (token or
session), else per client address. If Redis is unreachable the limiter counts in
memory instead of failing requests.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter

from tasks.core.config import Settings


def _key() -> str:
    user = g.get("user")
    return f"user:{user.id}" if user is not None else f"addr:{request.remote_addr}"


def _storage_uri(redis_url: str) -> str:
    # The limits library spells Redis over a Unix socket redis+unix://.
    return "redis+unix://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Limit the API blueprint (call after security.init_app, whose before_request sets ``g.user``).

    One limiter per app: Flask-Limiter keeps its storage on the instance.
    """
    from webapp import api

    app.config.update(
        RATELIMIT_STORAGE_URI=_storage_uri(settings.redis_url),
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": f"{settings.redis_prefix}ratelimit", "socket_timeout": 2},
        RATELIMIT_KEY_PREFIX="api",
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    limiter = Limiter(
        key_func=_key,
        # Pages that only read are left alone (a page load also fetches its scripts);
        # every route that changes something is counted, route by route.
        default_limits=[settings.api_rate_limit],
        default_limits_exempt_when=lambda: request.method in ("GET", "HEAD", "OPTIONS"),
        app=app,
    )
    limiter.limit(settings.api_rate_limit)(api.bp)
    return limiter
