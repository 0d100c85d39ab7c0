"""A local append-only spool for usage records the database did not take.

One JSON document per line (MongoDB extended JSON, so ids and dates survive), flushed
and fsync'd before the write is considered safe. A replay first moves the spool's lines
into `<spool>.replaying` (fsync'd, then the spool is removed), writes them (a callId
already in the ledger is skipped, so a replay never counts twice) and deletes that file
only once the write succeeded; a replay that fails or dies leaves it for the next one.
Appends and replays lock separate files, so a long replay never blocks a request.
"""
import atexit
import fcntl
import glob
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from datetime import timezone

from bson import json_util
from pymongo.errors import ConnectionFailure

log = logging.getLogger("backend.usage")
# Timestamps come back as aware UTC datetimes, as the ledger holds them.
JSON_OPTIONS = json_util.JSONOptions(tz_aware=True, tzinfo=timezone.utc)
PRIVATE_PREFIX = "tokenledger-spool-"


def _alive(pid):
    """Whether a process with this id exists (a folder name that is no id: no)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    def __init__(self, path):
        self.path = path
        self._thread_lock = threading.Lock()
        self._replay_lock = threading.Lock()

    @classmethod
    def of_this_process(cls):
        """A spool no other process uses, removed at a clean exit: the embedded store's records
        belong to this process's in-memory store, which another process must never replay into
        its own, and which is gone when this one ends (so are the spools of processes that ended
        without a clean exit: removed here)."""
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{PRIVATE_PREFIX}*-*")):
            if not _alive(folder[len(tempfile.gettempdir()) + 1 + len(PRIVATE_PREFIX):].split("-")[0]):
                shutil.rmtree(folder, ignore_errors=True)
        folder = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        return cls(os.path.join(folder, "usage-spool.jsonl"))

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
        with open(path, "a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _read_lines(path):
        try:
            # Bytes that are not UTF-8 survive the read (as surrogates) and are set aside by _parse.
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                return [line for line in handle if line.strip()]
        except FileNotFoundError:
            return []

    def append(self, records):
        with self._locked("lock", self._thread_lock):
            lines = [json_util.dumps(record, json_options=JSON_OPTIONS) + "\n" for record in records]
            self._append_lines(self.path, lines)

    def count(self):
        return len(self._read_lines(self.path)) + len(self._read_lines(self.replaying_path))

    def pending(self):
        """Anything to replay? Checked by size, so the background loop does not read the files."""
        return any(os.path.exists(path) and os.path.getsize(path) > 0 for path in (self.path, self.replaying_path))

    def _parse(self, lines):
        """The records of the lines. A process killed while appending leaves a torn last line, for
        a record it never answered; such lines (and any that are not a JSON object in UTF-8) are
        kept aside in <spool>.torn, not replayed."""
        records, torn = [], []
        for line in lines:
            try:
                line.encode("utf-8")
                record = json_util.loads(line, json_options=JSON_OPTIONS)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                torn.append(line if line.endswith("\n") else line + "\n")
        if torn:
            log.warning("Spool: %d unreadable line(s) kept aside in %s.torn", len(torn), self.path)
            self._append_lines(f"{self.path}.torn", torn)
        return records

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
            records = self._parse(lines)
            try:
                inserted = write(records) if records else []
            except ConnectionFailure:
                log.warning("Spool replay postponed, database unreachable; %d record(s) stay spooled", len(lines))
                return 0, len(lines)
            except Exception:
                try:
                    inserted = self._one_by_one(records, write)
                except ConnectionFailure:
                    log.warning("Spool replay postponed, database unreachable")
                    return 0, len(lines)
            os.remove(self.replaying_path)
            return len(inserted), 0

    def _one_by_one(self, records, write):
        """After a batch the database refused for what it holds: write each record alone, and set
        aside (in <spool>.rejected) those it refuses, so one bad record cannot block the others."""
        inserted, rejected = [], []
        for record in records:
            try:
                inserted += write([record])
            except ConnectionFailure:
                raise
            except Exception:
                log.exception("Spool: the database refused record %s; kept aside in %s.rejected",
                              record.get("callId"), self.path)
                rejected.append(json_util.dumps(record, json_options=JSON_OPTIONS) + "\n")
        if rejected:
            self._append_lines(f"{self.path}.rejected", rejected)
        return inserted
