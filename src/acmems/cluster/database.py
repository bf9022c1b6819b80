"""The connection to the cluster database (``[cluster]``): a psycopg pool, one listening connection.

Every use goes through :meth:`ClusterDb.transaction`, bounded in time: a database that is down, or
stopped in the middle of a query, becomes a :class:`DatabaseError` (answered 503 with Retry-After)
within :attr:`ClusterDb.timeout`, never a hang or a traceback. Losing and regaining the database is
logged once each. Notifications (LISTEN/NOTIFY) arrive on their own connection, re-opened after a
loss; since a notification can be lost, every listener also gets a call once a second
(:meth:`ClusterDb.every_second`), and a full resynchronisation after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import AsyncRowFactory, TupleRow, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from acmems.config.masking import masked
from acmems.core.settings import ClusterSettings
from acmems.errors import DatabaseError

R = TypeVar("R")

__all__ = ["ClusterDb", "Notified", "masked"]

log = logging.getLogger("acmems.cluster")


class _PoolErrors(logging.Filter):
    """Keeps the pool's last connection error (for our own one line) and drops its log records:
    the pool logs every failed reconnect as a WARNING; we log the loss once ourselves."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 2 and "error connecting" in str(record.msg):
            self.last = _one_line(record.args[1]) if isinstance(record.args[1], BaseException) else str(record.args[1])
        return record.levelno >= logging.ERROR and "error connecting" not in str(record.msg)


_POOL_ERRORS = _PoolErrors()
logging.getLogger("psycopg.pool").addFilter(_POOL_ERRORS)

Notified = Callable[[str], None]  # a notification's payload
_RECONNECT_DELAY = 1.0
_NO_ANSWER = "the cluster database does not answer"
_NO_ANSWER_RETRY = _NO_ANSWER + "; try again shortly"
IDLE_IN_TRANSACTION_MS = 3000  # well below the 15 s lease (acmems.cluster.leases.LEASE_SECONDS)


class ClusterDb:
    """The cluster database of one acmems process.

    Args:
        settings: ``[cluster]``.
        timeout: the longest any one database operation may take before it is a :class:`DatabaseError`.
        max_size: the most connections the pool opens.
    """

    def __init__(
        self, settings: ClusterSettings, *, timeout: float = 5.0, max_size: int = 8, log_loss: bool = True
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.instance = secrets.token_hex(8)  # this process, even if another runs with the same name
        self.timeout = timeout
        self.where = masked(settings.database)
        kwargs: dict[str, Any] = {
            "connect_timeout": max(2, int(timeout)),
            "application_name": f"acmems {settings.name}"[:63],
            # A process stopped inside a transaction (SIGSTOP, a swapped-out VM) must not hold its row
            # locks past a fraction of a lease: the server ends such a session, and a statement waiting
            # for a lock gives up before the operation timeout, so the answer names the cause.
            "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} "
            f"-c lock_timeout={int(timeout * 800)}",
        }
        if settings.password is not None:
            kwargs["password"] = settings.password
        self._kwargs = kwargs
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
            settings.database,
            kwargs=kwargs,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout,
            reconnect_timeout=timeout,  # the next request then tries afresh, without a long backoff
            check=AsyncConnectionPool.check_connection,
            name=f"acmems-{settings.name}",
        )
        self.available = True
        self.last_error = ""
        self.log_loss = log_loss
        self.transactions = 0  # run on the pool, for acmems_database_transactions_total
        self._listeners: dict[str, list[Notified]] = {}
        self._ticks: list[Callable[[], Awaitable[None]]] = []
        self._resyncs: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = False

    # ------------------------------------------------------------------------------ lifecycle

    async def open(self, *, listen: bool = True) -> None:
        """Open the pool (without waiting for the database) and, with ``listen`` (a server), the
        listening connection and the once-a-second calls."""
        await self._pool.open(wait=False)
        if listen:
            self._tasks.append(asyncio.create_task(self._listen_forever()))
            self._tasks.append(asyncio.create_task(self._tick_forever()))

    async def close(self, last: tuple[str, tuple[object, ...]] | None = None) -> None:
        """Stop listening (and the heartbeat), run ``last`` (a statement and its parameters: what
        the instance says as it leaves; a failure is ignored), and close every connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if last is not None:
            with contextlib.suppress(DatabaseError, psycopg.Error):
                # a connection of its own: through the pool, the close after it took a second longer
                async with self.direct() as cursor:
                    await cursor.execute(last[0], last[1])
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._pool.close(), self.timeout)

    # ------------------------------------------------------------------------------- queries

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncCursor[TupleRow]]:
        """A cursor in one transaction, committed when the block ends without an exception.

        Raises:
            DatabaseError: the database cannot be reached or did not answer within ``timeout``.
        """
        async with self.transaction_of(tuple_row) as cursor:
            yield cursor

    @contextlib.asynccontextmanager
    async def transaction_of(self, rows: AsyncRowFactory[R]) -> AsyncIterator[psycopg.AsyncCursor[R]]:
        """Like :meth:`transaction`, each row made by ``rows`` (``dict_row``, ``class_row(...)``)."""
        # While the database is known to be away, give up on a connection sooner: a prompt 503.
        wait = self.timeout if self.available else min(1.0, self.timeout)
        self.transactions += 1
        async with self._answering(_NO_ANSWER_RETRY):
            async with asyncio.timeout(self.timeout + 1.0):  # the pool's own timeout first: it knows why
                async with self._pool.connection(timeout=wait) as conn, conn.cursor(row_factory=rows) as cursor:
                    yield cursor

    @contextlib.asynccontextmanager
    async def streaming(self, name: str, rows: AsyncRowFactory[R]) -> AsyncIterator[psycopg.AsyncServerCursor[R]]:
        """Like :meth:`transaction_of` with a server-side cursor: rows come in batches as they are
        fetched, instead of the whole result in memory at once (a large index). Not time-bounded as
        a whole (its caller reads on while rows come); each fetch is."""
        async with self._answering(_NO_ANSWER_RETRY):
            async with self._pool.connection(timeout=self.timeout) as conn, conn.transaction():
                self.transactions += 1
                async with conn.cursor(name=name, row_factory=rows) as cursor:
                    yield cursor

    @contextlib.asynccontextmanager
    async def direct(self) -> AsyncIterator[psycopg.AsyncCursor[TupleRow]]:
        """Like :meth:`transaction` on a connection of its own (not pooled), whose failure names the
        exact reason at once: for commands such as ``acmems check``."""
        async with self._answering(_NO_ANSWER), asyncio.timeout(self.timeout):
            conn = await psycopg.AsyncConnection.connect(self.settings.database, **self._kwargs)
            async with conn, conn.cursor() as cursor:
                yield cursor

    @contextlib.asynccontextmanager
    async def _answering(self, message: str) -> AsyncIterator[None]:
        # The one place where a database that is away becomes a DatabaseError (and is noted so).
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError, OSError) as exc:
            self._lost(exc)
            raise DatabaseError(message, log_detail=self.last_error) from None
        self._regained()

    def _lost(self, exc: BaseException) -> None:
        if isinstance(exc, PoolTimeout) and _POOL_ERRORS.last:
            self.last_error = f"no connection within {self.timeout:g} s: {_POOL_ERRORS.last}"
        elif isinstance(exc, TimeoutError | PoolTimeout):
            self.last_error = f"no answer within {self.timeout:g} s"
        else:
            self.last_error = _one_line(exc)
        if self.available:
            self.available = False
            if self.log_loss:
                log.warning("cluster database %s does not answer: %s", self.where, self.last_error)

    def _regained(self) -> None:
        if not self.available:
            self.available = True
            _POOL_ERRORS.last = ""
            if self.log_loss:
                log.info("cluster database %s answers again", self.where)

    # -------------------------------------------------------------------------- notifications

    def listen(self, channel: str, callback: Notified) -> None:
        """Call ``callback(payload)`` for every notification on ``channel``."""
        self._listeners.setdefault(channel, []).append(callback)

    def heartbeat(self, statement: str, params: tuple[object, ...], late_after: float) -> None:
        """Run ``statement`` once a second in a task and on a connection of its own: nothing else
        this process does (a full pool, a slow look for changes) can delay it. A beat that has not
        reached the database for ``late_after`` seconds is logged once, and its return too."""
        self._tasks.append(asyncio.create_task(self._beat_forever(statement, params, late_after)))

    async def _beat_forever(self, statement: str, params: tuple[object, ...], late_after: float) -> None:
        conn: psycopg.AsyncConnection[TupleRow] | None = None
        last = time.monotonic()
        late = False
        try:
            while True:
                started = time.monotonic()
                try:
                    if conn is None:
                        conn = await psycopg.AsyncConnection.connect(
                            self.settings.database, autocommit=True, **self._kwargs
                        )
                    await asyncio.wait_for(conn.execute(statement, params), self.timeout)
                    if late:
                        log.info("heartbeat: reaches the cluster database again")
                    last, late = time.monotonic(), False
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    if conn is not None:
                        await conn.close()
                    conn = None
                    if not late and time.monotonic() - last >= late_after:
                        late = True
                        log.warning(
                            "heartbeat late: %.0f s since the last one reached the cluster database (%s); "
                            "others take this instance for gone after %g s",
                            time.monotonic() - last,
                            _one_line(exc),
                            late_after * 2,
                        )
                await asyncio.sleep(max(0.1, 1.0 - (time.monotonic() - started)))
        finally:
            if conn is not None:
                await conn.close()

    def every_second(self, tick: Callable[[], Awaitable[None]], resync: Callable[[], Awaitable[None]]) -> None:
        """Run ``tick`` once a second (what notifications may have missed) and ``resync`` after the
        listening connection was re-opened. Their :class:`DatabaseError` is ignored (logged once)."""
        self._ticks.append(tick)
        self._resyncs.append(resync)

    @property
    def listening(self) -> bool:
        """Whether the listening connection is open now."""
        return self._listening

    async def _listen_forever(self) -> None:
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.settings.database, autocommit=True, **self._kwargs)
            except (psycopg.Error, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(_RECONNECT_DELAY)
                continue
            try:
                async with conn:
                    for channel in self._listeners:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._listening = True
                    if not first:
                        await self._run_all(self._resyncs)
                    first = False
                    async for note in conn.notifies():
                        for callback in self._listeners.get(note.channel, ()):
                            callback(note.payload)
            except (psycopg.Error, OSError) as exc:
                self._lost(exc)
            finally:
                self._listening = False
            await asyncio.sleep(_RECONNECT_DELAY)

    async def _tick_forever(self) -> None:
        while True:
            started = time.monotonic()
            await self._run_all(self._ticks)
            await asyncio.sleep(max(0.1, 1.0 - (time.monotonic() - started)))

    async def _run_all(self, calls: list[Callable[[], Awaitable[None]]]) -> None:
        for call in calls:
            with contextlib.suppress(DatabaseError):
                await call()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
