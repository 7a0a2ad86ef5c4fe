"""doit's state file for release roots: sqlite, read in one query.

doit's own sqlite backend runs one SELECT per task; a no-op release of a
large root spends more time there than deciding anything. Up-to-date checks
never depend on this file (artifacts on disk decide), so it only remembers
what doit itself wants to remember. WAL and a long busy timeout let several
doit processes share it.
"""

from __future__ import annotations

from doit.dependency import SqliteDB

BUSY_TIMEOUT_MS = 60_000


class StateDB(SqliteDB):
    desc = "sqlite3, loaded in one query, safe for concurrent doit processes"

    def __init__(self, name, codec, *, module_name=None):
        super().__init__(name, codec, module_name=module_name)
        self._conn.execute(f"pragma busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("pragma journal_mode = wal")
        raw = self._conn.execute("select task_id, cast(task_data as text) as data from doit").fetchall()
        self._raw = {row["task_id"]: row["data"] for row in raw}

    def _get_task_data(self, task_id):
        text = self._raw.get(task_id)
        return self.codec.decode(text) if text else {}

    def in_(self, task_id):
        return task_id in self._cache or task_id in self._raw

    def dump(self):
        if self._dirty:
            super().dump()
        else:
            self._conn.close()
