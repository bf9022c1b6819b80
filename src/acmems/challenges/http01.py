"""HTTP-01 (RFC 8555 §8.3): key authorizations held in memory for the challenge listener, and in a
cluster also in the database for every other instance's listener."""

from __future__ import annotations

import re
from typing import Protocol

__all__ = ["Http01Solver", "NoSharedTokens", "TokenTable", "looks_like_token"]

# RFC 8555 §8.1: a token has at least 128 bits of entropy, base64url without padding: 22 characters
# or more (Let's Encrypt's and Pebble's have 43). 256 is our bound: no CA's is that long.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22,256}")


def looks_like_token(token: str) -> bool:
    """Whether ``token`` is shaped like an ACME token: anything else is a 404 without a lookup."""
    return _TOKEN_RE.fullmatch(token) is not None


class TokenTable(Protocol):
    """Where the tokens of every instance of a cluster are published (:class:`acmems.cluster.tokens.SharedTokens`)."""

    async def put(self, token: str, key_authorization: str) -> None: ...

    async def delete(self, token: str) -> None: ...

    async def get(self, token: str) -> str | None: ...


class Http01Solver:
    """Holds ``token -> key authorization`` while an authorization is pending.

    The challenge listener answers any Host header: the token alone identifies the challenge, and
    a token nobody holds gets 404, which lets nginx try the next acmems (``proxy_next_upstream
    http_404``). With ``shared`` (a cluster) a token is also published there before the CA is told,
    so any instance answers it.
    """

    challenge_type = "http-01"

    def __init__(self, name: str, shared: TokenTable | None = None) -> None:
        self.name = name
        self.shared: TokenTable = shared if shared is not None else NoSharedTokens()
        self._tokens: dict[str, str] = {}

    async def present(self, identifier: str, token: str, validation: str) -> None:
        """Serve ``validation`` (the key authorization) for ``token``; in a cluster, committed to
        the database first (raises :class:`DatabaseError` when it does not answer)."""
        await self.shared.put(token, validation)
        self._tokens[token] = validation

    async def cleanup(self, identifier: str, token: str, validation: str) -> None:
        """Forget ``token`` once its authorization is done."""
        self._tokens.pop(token, None)
        await self.shared.delete(token)

    def warnings(self) -> list[str]:
        """Nothing to warn of."""
        return []

    async def recover(self) -> int:
        """Nothing outlives this process: the tokens are in memory (a cluster's expire)."""
        return 0

    def key_authorization(self, token: str) -> str | None:
        """What this process holds for ``token``, or None."""
        return self._tokens.get(token)

    async def lookup(self, token: str) -> str | None:
        """What to answer for ``token``: this process's, else any instance's (never remembered when
        not found). The challenge handler asks only for what :func:`looks_like_token`. Raises
        :class:`DatabaseError` when only the database could know."""
        held = self._tokens.get(token)
        if held is not None:
            return held
        return await self.shared.get(token)


class NoSharedTokens:
    """One acmems: its own challenge listeners answer its tokens; nothing to publish elsewhere."""

    async def put(self, token: str, key_authorization: str) -> None:
        """Nothing to publish."""

    async def delete(self, token: str) -> None:
        """Nothing to withdraw."""

    async def get(self, token: str) -> str | None:
        """No other instance's tokens."""
        return None
