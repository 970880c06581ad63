"""Post a message to a Slack incoming webhook: the one place that talks to Slack.

``post(url, text, blocks=None)`` (and ``post_async``, the same for asyncio code)
uses ``slack_sdk``'s webhook clients. ``text`` is what notifications and clients
without blocks show; ``blocks`` (Block Kit) is the richer layout. A message
Slack did not take (a connection error, a timeout, any answer but 200) raises
``SlackError``, so the caller can keep it and try again.

An incoming webhook's URL is a secret (whoever has it may post to the channel):
it is never logged, nor put in an error message. slack_sdk logs each request's
URL at DEBUG on its own loggers; they are held at INFO here.
"""

from __future__ import annotations

import logging
import urllib.error
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.webhook import WebhookClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tasks.core import errors

#: Seconds a post may take (connecting included).
TIMEOUT = 10
_SDK_LOG = logging.getLogger("tasks.ops.slack.sdk")
_SDK_LOG.setLevel(logging.INFO)


class SlackError(errors.ReachError):
    """Slack did not take the message (never names the webhook's URL)."""

    code = "slack_unavailable"


def _answer(status: int, body: str) -> None:
    if status != 200:
        # Slack answers a short reason ("invalid_payload", "no_service"): safe to show.
        raise SlackError(f"Slack answered {status}: {body[:200]}")


def post(url: str, text: str, blocks: Sequence[dict[str, Any]] | None = None, *, timeout: int = TIMEOUT) -> None:
    """Post ``text`` (and ``blocks``) to the incoming webhook at ``url``; ``SlackError`` if it was not taken."""
    client = WebhookClient(url, timeout=timeout, logger=_SDK_LOG)
    try:
        response = client.send(text=text, blocks=blocks)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise SlackError(f"cannot reach Slack: {type(exc).__name__}") from None
    _answer(response.status_code, response.body)


async def post_async(
    url: str, text: str, blocks: Sequence[dict[str, Any]] | None = None, *, timeout: int = TIMEOUT
) -> None:
    """``post`` for asyncio code (``AsyncWebhookClient``)."""
    client = AsyncWebhookClient(url, timeout=timeout, logger=_SDK_LOG)
    try:
        response = await client.send(text=text, blocks=blocks)
    except (OSError, TimeoutError, ValueError, aiohttp.ClientError) as exc:
        raise SlackError(f"cannot reach Slack: {type(exc).__name__}") from None
    _answer(response.status_code, response.body)
