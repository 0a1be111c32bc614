"""A local OAuth2 token endpoint for tests: an http.server on 127.0.0.1 in a thread.

It serves what msal and google-auth ask for: OpenID discovery documents under
any path (``.../v2.0/.well-known/openid-configuration``), and token requests
(POST ``/token``) for the client-credentials grant, the JWT-bearer grant of a
service account and the refresh-token grant. Each token it issues is
``token-<n>``, valid for ``expires_in`` seconds; every request is recorded.
With ``refuse`` set, token requests get ``400 invalid_client``. Given an
``ssl_context`` it speaks HTTPS (msal accepts only an https authority).
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["TokenEndpoint", "TokenRequest"]


@dataclass
class TokenRequest:
    """One POST to the token endpoint: its path and form fields."""

    path: str
    form: dict[str, str] = field(default_factory=dict)


class TokenEndpoint:
    """The endpoint; use as a context manager (``with TokenEndpoint() as endpoint:``)."""

    def __init__(
        self, *, expires_in: int = 3600, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.expires_in = expires_in
        self.ssl_context = ssl_context
        self.refuse = False
        self.requests: list[TokenRequest] = []
        self.issued = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        """Return ``http://127.0.0.1:PORT`` (``https`` with a context)."""
        assert self._server is not None, "not started"
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_uri(self) -> str:
        """Return the token URL."""
        return self.base + "/token"

    def __enter__(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.endswith("/.well-known/openid-configuration"):
                    tenant = self.path.split("/.well-known", 1)[0].removesuffix("/v2.0")
                    issuer = endpoint.base + tenant
                    self._json(
                        200,
                        {
                            "token_endpoint": endpoint.token_uri,
                            "authorization_endpoint": issuer + "/authorize",
                            "issuer": issuer,
                        },
                    )
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                with endpoint._lock:
                    endpoint.requests.append(TokenRequest(self.path, form))
                    if endpoint.refuse:
                        status, body = (
                            400,
                            {
                                "error": "invalid_client",
                                "error_description": "AADSTS7000215: Invalid client secret.",
                            },
                        )
                    else:
                        endpoint.issued += 1
                        status, body = (
                            200,
                            {
                                "access_token": f"token-{endpoint.issued}",
                                "token_type": "Bearer",
                                "expires_in": endpoint.expires_in,
                            },
                        )
                self._json(status, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.ssl_context is not None:
            self._server.socket = self.ssl_context.wrap_socket(
                self._server.socket, server_side=True
            )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
