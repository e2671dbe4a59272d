"""Django's SQLite backend with the process's writers taking turns in Python.

SQLite lets one writer in at a time. A writer that finds the lock taken sleeps and
retries (its busy handler: 1, 2, 5, 10 … up to 100 ms between tries), so under a
burst of calls the DB threads of one process (callcenter/db.py) spent most of their
time asleep while the lock was free (bench/burst.py). Here the writers of this
process queue on a `threading.Lock` instead and go in as soon as it is released:
a transaction holds it from `BEGIN IMMEDIATE` (settings: transaction_mode) to its
commit or rollback, a write outside a transaction for its one statement. Reads take
nothing (WAL). Other processes (the Celery worker) still meet SQLite's own lock and
busy timeout. After `timeout` seconds (the OPTIONS value) waiting, "database is
locked", as SQLite would say.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import OperationalError
from django.db.backends.sqlite3 import base

# One per process: every connection of every thread writes to the same file.
_writer = threading.Lock()
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


class DatabaseWrapper(base.DatabaseWrapper):
    holds_writer = False

    def _take_writer(self) -> None:
        if self.holds_writer:
            return
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        if not _writer.acquire(timeout=timeout):
            raise OperationalError("database is locked (waited for this process)")
        self.holds_writer = True

    def _give_writer(self) -> None:
        if self.holds_writer:
            self.holds_writer = False
            _writer.release()

    def _start_transaction_under_autocommit(self) -> None:
        self._take_writer()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._give_writer()
            raise

    def _commit(self) -> Any:
        try:
            return super()._commit()
        finally:
            self._give_writer()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()
        finally:
            self._give_writer()

    def _close(self) -> Any:
        try:
            return super()._close()
        finally:
            self._give_writer()

    def create_cursor(self, name: str | None = None) -> Any:
        cursor = self.connection.cursor(factory=WriterTurnCursor)
        cursor.wrapper = self
        return cursor


class WriterTurnCursor(base.SQLiteCursorWrapper):
    wrapper: DatabaseWrapper

    def execute(self, query: str, params: Any = None) -> Any:
        if not self._writes(query):
            return super().execute(query, params)
        return self._in_turn(super().execute, query, params)

    def executemany(self, query: str, param_list: Any) -> Any:
        if not self._writes(query):
            return super().executemany(query, param_list)
        return self._in_turn(super().executemany, query, param_list)

    def _writes(self, query: str) -> bool:
        return query.lstrip()[:7].upper().startswith(_WRITES)

    def _in_turn(self, run: Any, query: str, params: Any) -> Any:
        wrapper = self.wrapper
        if wrapper.holds_writer:
            return run(query, params)
        wrapper._take_writer()
        if not wrapper.get_autocommit():
            # A manual transaction (set_autocommit(False)): its turn lasts until
            # its commit or rollback.
            return run(query, params)
        try:
            return run(query, params)
        finally:
            wrapper._give_writer()
