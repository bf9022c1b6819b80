"""HTTP-01 (RFC 8555 §8.3): key authorizations held in memory for the challenge listener."""

from __future__ import annotations

__all__ = ["Http01Solver"]


class Http01Solver:
    """Holds ``token -> key authorization`` while an authorization is pending.

    The challenge listener answers any Host header: the token alone identifies the challenge, and
    a token we do not hold gets 404, which lets nginx try the next acmems (``proxy_next_upstream
    http_404``).
    """

    challenge_type = "http-01"

    def __init__(self, name: str) -> None:
        self.name = name
        self._tokens: dict[str, str] = {}

    async def present(self, identifier: str, token: str, validation: str) -> None:
        """Serve ``validation`` (the key authorization) for ``token``."""
        self._tokens[token] = validation

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        """Forget ``token`` once its authorization is done."""
        self._tokens.pop(token, None)

    def key_authorization(self, token: str) -> str | None:
        """What to answer for ``token``, or None (404)."""
        return self._tokens.get(token)
