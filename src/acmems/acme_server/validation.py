"""acmems' own http-01 check for auth blocks with ``acme-challenge = http-01``: the client answers
the challenge, acmems fetches ``http://NAME:PORT/.well-known/acme-challenge/TOKEN`` ([acme-server]
``http-01-port``) and compares the key authorization (RFC 8555 §8.3), before anything goes upstream."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import aiohttp

from acmems.acme_server.problems import AcmeProblem
from acmems.acme_server.service import Call
from acmems.acme_server.views import Reply, authz_view
from acmems.core.acme_records import AcmeAuthz
from acmems.storage.acme_store import AcmeStore

__all__ = ["HttpValidator"]

log = logging.getLogger("acmems.acme_server")
FETCH_TIMEOUT = 10.0
_MAX_ANSWER = 1024  # a key authorization is about 87 bytes


class HttpValidator:
    """Runs the checks in the background (``tasks``), one per answered challenge."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    async def answer(self, call: Call, port: int) -> Reply:
        """The client says its answer is in place: check it (once), answer the challenge's state."""
        found = await call.store.authz(call.ident)
        if found is None or found.account != call.owner.id:
            raise AcmeProblem("notFound", "no such challenge for this account")
        if found.challenge_status == "pending" and found.status == "pending":
            found = dataclasses.replace(found, challenge_status="processing")
            await call.store.save_authz(found)
            key_authorization = f"{found.token}.{call.owner.thumbprint}"
            task = asyncio.create_task(self._check(call.store, found, key_authorization, port))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        challenge = authz_view(found, call.urls)["challenges"][0]
        up = f'<{call.urls.of("authz", found.id)}>;rel="up"'
        return Reply(200, challenge, headers={"Link": up})

    async def _check(self, store: AcmeStore, authz: AcmeAuthz, key_authorization: str, port: int) -> None:
        value = authz.identifier.value
        host = f"[{value}]" if ":" in value else value
        url = f"http://{host}:{port}/.well-known/acme-challenge/{authz.token}"
        problem = None
        try:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                body = (await response.content.read(_MAX_ANSWER)).decode("ascii", "replace").strip()
                if response.status != 200:
                    problem = AcmeProblem("unauthorized", f"{url} answered {response.status}")
                elif body != key_authorization:
                    # what it answered is not shown: acmems would read other servers' pages back to a client
                    problem = AcmeProblem(
                        "incorrectResponse", f"{url} answered {len(body)} bytes that are not the key authorization"
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = AcmeProblem("connection", f"cannot fetch {url}: {exc or type(exc).__name__}")
        if problem is None:
            checked = dataclasses.replace(authz, status="valid", challenge_status="valid", validated=time.time())
        else:
            log.info("http-01 check of %s failed: %s", value, problem.detail)
            checked = dataclasses.replace(authz, status="invalid", challenge_status="invalid", error=problem.to_json())
        try:
            await store.save_authz(checked)
        except Exception:  # the store's failure: the challenge stays processing, logged
            log.exception("cannot save the http-01 check of %s", value)
