"""A local append-only spool for usage records the database did not take.

One JSON document per line (MongoDB extended JSON, so ids and dates survive), flushed
and fsync'd before the write is considered safe. A replay first moves the spool's lines
into `<spool>.replaying` (fsync'd, then the spool is removed), writes them (a callId
already in the ledger is skipped, so a replay never counts twice) and deletes that file
only once the write succeeded; a replay that fails or dies leaves it for the next one.
Appends and replays lock separate files, so a long replay never blocks a request.
"""
import fcntl
import logging
import os
import threading
from contextlib import contextmanager
from datetime import timezone

from bson import json_util

log = logging.getLogger("backend.usage")
# Timestamps come back as aware UTC datetimes, as the ledger holds them.
JSON_OPTIONS = json_util.JSONOptions(tz_aware=True, tzinfo=timezone.utc)


class Spool:
    def __init__(self, path):
        self.path = path
        self._thread_lock = threading.Lock()
        self._replay_lock = threading.Lock()

    @property
    def replaying_path(self):
        return f"{self.path}.replaying"

    @contextmanager
    def _locked(self, suffix, thread_lock):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with thread_lock, open(f"{self.path}.{suffix}", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _append_lines(path, lines):
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _read_lines(path):
        try:
            with open(path, encoding="utf-8") as handle:
                return [line for line in handle if line.strip()]
        except FileNotFoundError:
            return []

    def append(self, records):
        with self._locked("lock", self._thread_lock):
            self._append_lines(self.path, [json_util.dumps(record, json_options=JSON_OPTIONS) + "\n" for record in records])

    def count(self):
        return len(self._read_lines(self.path)) + len(self._read_lines(self.replaying_path))

    def pending(self):
        """Anything to replay? Checked by size, so the background loop does not read the files."""
        return any(os.path.exists(path) and os.path.getsize(path) > 0 for path in (self.path, self.replaying_path))

    def replay(self, write):
        """Pass every spooled record to `write(records) -> inserted records`; returns (replayed, left)."""
        with self._locked("replay-lock", self._replay_lock):
            with self._locked("lock", self._thread_lock):
                fresh = self._read_lines(self.path)
                if fresh:
                    self._append_lines(self.replaying_path, fresh)
                    os.remove(self.path)
            lines = self._read_lines(self.replaying_path)
            if not lines:
                return 0, 0
            try:
                inserted = write([json_util.loads(line, json_options=JSON_OPTIONS) for line in lines])
            except Exception:
                log.exception("Spool replay failed; %d record(s) stay spooled", len(lines))
                return 0, len(lines)
            os.remove(self.replaying_path)
            return len(inserted), 0
