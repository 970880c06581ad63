"""A small, real OAuth 2.0 provider (HTTP, in a thread) standing in for Google in tests.

It implements the authorization-code flow the app uses: ``/authorize`` redirects
back with a code and the state; ``/token`` exchanges a code once (a reused or
unknown code is ``invalid_grant``) after checking the client and redirect URI;
``/userinfo`` answers for a bearer token with the OpenID Connect claims Google
sends (sub, email, email_verified, name). Who "signs in" is set by the test.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import threading
import urllib.parse
from typing import Any

from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from tests.support.smtp_sink import free_port

CLIENT_ID = "test-client.apps.example"
CLIENT_SECRET = "test-client-secret"
SCOPE = "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"


@dataclasses.dataclass
class Account:
    email: str
    name: str = "Test User"
    sub: str = ""
    email_verified: bool = True


class OAuthProvider:
    """Start with ``start()``; set ``account`` to choose who signs in next."""

    def __init__(self) -> None:
        self.port = free_port()
        self.account = Account(email="alice@example.com", name="Alice")
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, Account] = {}
        self.token_requests = 0
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Settings that point the app at this provider."""
        return {
            "GOOGLE_OAUTH_CLIENT_ID": CLIENT_ID,
            "GOOGLE_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "GOOGLE_OAUTH_AUTHORIZE_URL": f"{self.url}/authorize",
            "GOOGLE_OAUTH_TOKEN_URL": f"{self.url}/token",
            "GOOGLE_OAUTH_USERINFO_URL": f"{self.url}/userinfo",
        }

    def _app(self) -> Flask:
        app = Flask("oauth-provider")

        @app.get("/authorize")
        def authorize() -> Any:
            args = request.args
            if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code":
                return jsonify(error="unauthorized_client"), 400
            redirect_uri, state = args.get("redirect_uri", ""), args.get("state", "")
            code = secrets.token_urlsafe(16)
            account = self.account
            if not account.sub:
                account = dataclasses.replace(account, sub=f"sub-{account.email}")
            with self._lock:
                self.codes[code] = {"redirect_uri": redirect_uri, "account": account, "used": False}
            query = urllib.parse.urlencode({"code": code, "state": state})
            return redirect(f"{redirect_uri}?{query}")

        @app.post("/token")
        def token() -> Any:
            self.token_requests += 1
            form = request.form
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                decoded = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
                client_id, client_secret = urllib.parse.unquote(client_id), urllib.parse.unquote(client_secret)
            if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
                return jsonify(error="invalid_client"), 401
            if form.get("grant_type") != "authorization_code":
                return jsonify(error="unsupported_grant_type"), 400
            with self._lock:
                grant = self.codes.get(form.get("code", ""))
                if grant is None or grant["used"] or grant["redirect_uri"] != form.get("redirect_uri"):
                    return jsonify(error="invalid_grant", error_description="code unknown, used or mismatched"), 400
                grant["used"] = True
                access = secrets.token_urlsafe(24)
                self.tokens[access] = grant["account"]
            return jsonify(access_token=access, token_type="Bearer", expires_in=3599, scope=SCOPE, id_token="unused")

        @app.get("/userinfo")
        def userinfo() -> Any:
            auth = request.headers.get("Authorization", "")
            account = self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
            if account is None:
                return jsonify(error="invalid_token"), 401
            return jsonify(
                sub=account.sub, email=account.email, email_verified=account.email_verified, name=account.name
            )

        return app

    def start(self) -> OAuthProvider:
        self._server = make_server("127.0.0.1", self.port, self._app(), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
