"""The ledger's write-ahead log: what each process promised the ledger, on local disk.

Every process appends to segments of its own, `<SPOOL_PATH>.<process>.<n>.wal`, one JSON line
per entry (orjson; ObjectIds and dates as MongoDB extended JSON, so a line reads back typed):
- a reservation, before a call's budget reservation: what it adds to which counters (given back
  if the process dies before the call's intent);
- an intent, before a provider call: the ledger record the call would leave if the process died
  while it ran (estimated at its budget reservation, outcome `interrupted`);
- a record, when the call closes: the ledger record, fsync'd before the request answers (one
  fsync for the records of concurrent requests: group commit);
- a resolution: the callIds the ledger writer wrote, or intents whose call the provider refused.
Intents and resolutions are written without an fsync: they survive the process being killed,
not the machine losing power.

A process holds an exclusive lock (flock) on `<SPOOL_PATH>.<process>.lock` while it lives; the
kernel releases it when the process dies, however it dies. `recover()` (every process's background
pass, scripts/replay_spool.py) takes the lock of each process that is gone and writes what its
segments hold and the ledger may lack: records not marked written, and intents with neither a
record nor a resolution (calls in flight when it died). Writing is idempotent (a record's _id is
its callId), so a recovery that dies is simply done again. A live process never reads its own
segments back except after a failed write (`unwritten()`); its writer takes records from memory.

A full segment is sealed and a new one begun; a sealed segment is deleted once
everything in it is resolved. Lines that cannot be read (a torn last line of a killed process)
are kept aside in `<SPOOL_PATH>.torn`, records the database refuses in `<SPOOL_PATH>.rejected`.
`<SPOOL_PATH>` itself (and `.replaying`) is the spool of versions before segments: recovered too.
"""
import atexit
import errno
import fcntl
import glob
import logging
import os
import shutil
import stat
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
from bson import ObjectId, json_util
from pymongo.errors import ConnectionFailure

log = logging.getLogger("backend.usage")
# Timestamps come back as aware UTC datetimes, as the ledger holds them.
JSON_OPTIONS = json_util.JSONOptions(tz_aware=True, tzinfo=timezone.utc)
PRIVATE_PREFIX = "tokenledger-spool-"
# A segment's size, zero-filled when it begins (its lines then overwrite zeros): a process's first
# is small (most processes of tests and scripts record little), each next one 4 times larger, up
# to SEGMENT_BYTES (about 1,500 calls).
FIRST_SEGMENT_BYTES = 128 * 1024
SEGMENT_BYTES = 4 * 1024 * 1024
ZERO_CHUNK = 1024 * 1024
# Entry kinds (the "k" of a line; a line without one is a record of the spool before segments).
RESERVING, INTENT, RECORD, RESOLVED = "v", "i", "r", "x"


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


def _extended(value):
    if isinstance(value, ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, datetime):
        return {"$date": value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    raise TypeError


# The start of a line bson's encoder wrote (read back by bson's decoder, exactly).
BSON_LINE = b'{"j": 1, '


def encode(entry):
    """One line. orjson for speed; what it cannot encode (an int past 64 bits, a lone surrogate)
    goes through bson's encoder, so the line is still written, read back exactly, and set aside
    later, never lost."""
    try:
        return orjson.dumps(entry, default=_extended, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json_util.dumps({"j": 1, **entry}, json_options=JSON_OPTIONS) + "\n").encode("utf-8", "surrogateescape")


class _Legacy(Exception):
    """A value orjson's reading cannot type: the line goes through bson's decoder."""


def _typed(value):
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "$oid":
                return ObjectId(inner)
            if key == "$date" and isinstance(inner, str):
                return datetime.fromisoformat(inner.replace("Z", "+00:00"))
            if key.startswith("$"):
                raise _Legacy
        return {key: _typed(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_typed(inner) for inner in value]
    return value


def decode(line, exact=False):
    """The entry of one line, or None when it is not a JSON object in UTF-8. `exact`: through
    bson's decoder (orjson reads an int past 64 bits as a float), as the lines bson wrote are."""
    try:
        if exact or line.startswith(BSON_LINE):
            value = json_util.loads(line.decode("utf-8"), json_options=JSON_OPTIONS)
        else:
            try:
                value = _typed(orjson.loads(line))
            except _Legacy:
                value = json_util.loads(line.decode("utf-8"), json_options=JSON_OPTIONS)
    except Exception:  # noqa: BLE001 - not JSON, not UTF-8, an $oid that is no ObjectId...: unreadable
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Contents:
    """What a set of segments holds: its record lines, its intents (by callId), the callIds
    resolved, and unreadable lines."""

    records: list = field(default_factory=list)
    intents: dict = field(default_factory=dict)
    reservations: dict = field(default_factory=dict)
    resolved: set = field(default_factory=set)
    torn: list = field(default_factory=list)

    def read(self, lines, exact=False):
        for line in lines:
            entry = decode(line, exact)
            kind = entry.get("k", RECORD) if entry is not None else None
            body = (entry.get("d", entry) if "k" in entry else entry) if kind == RECORD else (entry or {}).get("d")
            ids = (entry or {}).get("ids")
            if kind in (RECORD, INTENT, RESERVING) and isinstance(body, dict) and isinstance(body.get("callId"), str):
                if kind == RECORD:
                    self.records.append(body)
                else:
                    (self.intents if kind == INTENT else self.reservations).setdefault(body["callId"], body)
            elif kind == RESOLVED and isinstance(ids, list) and all(isinstance(i, str) for i in ids):
                self.resolved.update(ids)
            else:
                self.torn.append(line if line.endswith(b"\n") else line + b"\n")
        return self

    def unwritten(self):
        """Records not marked written, then the interrupted calls: intents with no record and no
        resolution."""
        records = {}
        for record in self.records:
            if record.get("callId") not in self.resolved:
                records.setdefault(record.get("callId"), record)
        recorded = {record.get("callId") for record in self.records}
        interrupted = [intent for call_id, intent in self.intents.items()
                       if call_id not in recorded and call_id not in self.resolved]
        return list(records.values()), interrupted

    def abandoned(self):
        """Reservations whose call has no intent, record or resolution: the process died between
        reserving and calling (the call was never made)."""
        seen = {record.get("callId") for record in self.records} | set(self.intents) | self.resolved
        return [reservation for call_id, reservation in self.reservations.items() if call_id not in seen]


def _regular(path):
    """Is `path` a regular file (not a folder, FIFO, device or symlink that lies in the spool's way)?"""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _set_aside(path, why):
    """Move a file that is not what its name says out of the spool's way (it is kept, renamed)."""
    log.warning("Spool: %s is %s; moved aside to %s.junk", path, why, path)
    try:
        os.replace(path, f"{path}.junk")
    except OSError:
        log.exception("Spool: %s could not be moved aside", path)


def _read(path):
    """The lines of a segment (a segment is zero-filled ahead of its lines: the zeros at its end are
    not lines; a NUL byte within the lines makes its line unreadable, never the rest)."""
    if not _regular(path):
        if os.path.lexists(path):
            _set_aside(path, "not a regular file")
        return []
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return []
    return [line for line in data.rstrip(b"\0").splitlines(keepends=True) if line.strip()]


def _append(path, lines, sync=True):
    with open(path, "ab") as handle:
        handle.writelines(lines)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())


def _write_all(fd, data, offset):
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


class Spool:
    def __init__(self, path, fsync=True):
        """`fsync=False` (SPOOL_FSYNC=false): records are written, not fsync'd, before the answer:
        a killed process still loses nothing; a machine that loses power may lose the last ones."""
        self.path = path
        self.fsync = fsync
        self._lock = threading.Lock()  # appends, rotation, the open set
        self._sync_lock = threading.Lock()
        self._recover_lock = threading.Lock()
        self._pid = self._process = None
        self._fd = None
        self._appended = self._synced = 0  # appends made / appends known on disk (group commit)
        # For each segment of this process: the callIds it holds that are not resolved yet.
        self._open = {}
        self._segment_of_intent = {}

    @classmethod
    def of_this_process(cls, fsync=True):
        """A spool no other process uses, removed at a clean exit: the embedded store's records
        belong to this process's in-memory store, which another process must never replay into
        its own, and which is gone when this one ends (so are the spools of processes that ended
        without a clean exit: removed here)."""
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{PRIVATE_PREFIX}*-*")):
            if not _alive(folder[len(tempfile.gettempdir()) + 1 + len(PRIVATE_PREFIX):].split("-")[0]):
                shutil.rmtree(folder, ignore_errors=True)
        folder = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        return cls(os.path.join(folder, "usage-spool.jsonl"), fsync)

    # -- this process's segments ------------------------------------------------------------------

    def _segment_path(self, number):
        return f"{self.path}.{self._process}.{number:06d}.wal"

    def _open_segment(self):
        """On the first append of this process (a forked worker gets its own): lock, then segment 1."""
        if self._pid == os.getpid():
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._pid, self._process = os.getpid(), f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock_fd = os.open(f"{self.path}.{self._process}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._open, self._segment_of_intent, self._number = {}, {}, 0
        self._new_segment()

    def _new_segment(self, size=None):
        """A segment zero-filled to its size and synced once, so that an fsync of a line written
        into it later flushes data alone (no size or block allocation to journal)."""
        size = size or FIRST_SEGMENT_BYTES
        self._number += 1
        self._segment = self._segment_path(self._number)
        self._fd = os.open(self._segment, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        zeros = bytes(ZERO_CHUNK)
        for offset in range(0, size, ZERO_CHUNK):
            _write_all(self._fd, zeros[:size - offset], offset)
        os.fsync(self._fd)
        self._size, self._capacity = 0, size
        self._open[self._segment] = set()

    def _add(self, data):
        """Write a line (or lines) under the lock; returns this append's number (for the group commit)."""
        self._open_segment()
        if self._size + len(data) > self._capacity:
            with self._sync_lock:  # no fsync of the sealed segment may be under way when it closes
                os.fsync(self._fd)
                self._synced = self._appended
                sealed, sealed_fd = self._segment, self._fd
                self._new_segment(max(min(4 * self._capacity, SEGMENT_BYTES), len(data)))
                os.close(sealed_fd)
            self._forget_if_resolved(sealed)
        _write_all(self._fd, data, self._size)
        self._size += len(data)
        self._appended += 1
        return self._appended

    def _sync(self, number):
        """Make append `number` durable: one fsync covers every append made before it started."""
        with self._sync_lock:
            if self._synced >= number:
                return
            target, fd = self._appended, self._fd
            os.fdatasync(fd)
            self._synced = max(self._synced, target)

    def reserving(self, reservation):
        """Note a budget reservation about to be made ({"callId", "reserved": {key: [tokens, units]}});
        the call's intent resolves it (not fsync'd, like an intent)."""
        data = encode({"k": RESERVING, "d": reservation})
        with self._lock:
            self._add(data)
            self._open[self._segment].add(reservation["callId"])
            self._segment_of_intent[reservation["callId"]] = self._segment

    def intend(self, intent):
        """Note a provider call about to be made: `intent` is the ledger record it leaves if this
        process dies before the call closes (not fsync'd: a kill keeps it, a power loss may not)."""
        data = encode({"k": INTENT, "d": intent})
        with self._lock:
            self._add(data)
            self._resolve_intent(intent["callId"])
            self._open[self._segment].add(intent["callId"])
            self._segment_of_intent[intent["callId"]] = self._segment

    def append(self, records):
        """Spool records, durably: when this returns they are on disk (fsync'd)."""
        data = b"".join(encode({"k": RECORD, "d": record}) for record in records)
        with self._lock:
            number = self._add(data)
            for record in records:
                self._resolve_intent(record.get("callId"))
                self._open[self._segment].add(record.get("callId"))
        if self.fsync:
            self._sync(number)

    def resolve(self, call_ids):
        """Mark records written to the ledger (or intents of calls the provider refused)."""
        if not call_ids:
            return
        data = encode({"k": RESOLVED, "ids": list(call_ids)})
        with self._lock:
            self._add(data)
            for call_id in call_ids:
                self._resolve_intent(call_id)
                for segment, ids in list(self._open.items()):
                    if call_id in ids:
                        ids.discard(call_id)
                        self._forget_if_resolved(segment)

    def _resolve_intent(self, call_id):
        segment = self._segment_of_intent.pop(call_id, None)
        if segment is not None:
            self._open.get(segment, set()).discard(call_id)
            self._forget_if_resolved(segment)

    def _forget_if_resolved(self, segment):
        if segment != self._segment and not self._open.get(segment):
            self._open.pop(segment, None)
            try:
                os.remove(segment)
            except FileNotFoundError:
                pass

    def retire(self):
        """At a clean exit: when everything this process spooled is resolved, remove its segments
        and lock (else they stay for another process's recovery)."""
        if self._pid != os.getpid():
            return
        with self._lock:
            if any(self._open.values()):
                return
            for segment in list(self._open):
                os.remove(segment)
            os.remove(f"{self.path}.{self._process}.lock")
            os.close(self._lock_fd)
            self._pid, self._open = None, {}

    def release(self):
        """Let go of this process's segments, as the kernel does when the process dies: from now on
        any process's recovery takes them (tests use it to stand for a kill)."""
        if self._pid == os.getpid():
            os.close(self._lock_fd)
            self._pid = None

    def unwritten(self):
        """The records this process spooled that are not marked written (read back from its
        segments: after a write failed, or while the migrations kept the writer waiting)."""
        if self._pid != os.getpid():
            return []
        with self._lock:
            segments = sorted(self._open)
        return Contents().read(line for segment in segments for line in _read(segment)).unwritten()[0]

    # -- what other processes left ----------------------------------------------------------------

    def _gone(self):
        """(lock fd, lock path, process name) of each process whose lock nobody holds: it has ended
        (files in the way, say a folder named like a lock, are moved aside)."""
        for lock_path in sorted(glob.glob(f"{glob.escape(self.path)}.*.lock")):
            process = lock_path[len(self.path) + 1:-len(".lock")]
            if process == self._process and self._pid == os.getpid():
                continue
            if not _regular(lock_path):
                if os.path.lexists(lock_path):
                    _set_aside(lock_path, "not a regular file")
                continue
            try:
                fd = os.open(lock_path, os.O_WRONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            except OSError:
                _set_aside(lock_path, "a lock that cannot be opened")
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    _set_aside(lock_path, f"a lock that cannot be taken ({exc.strerror})")
                continue
            yield fd, lock_path, process

    def _legacy_paths(self):
        return [path for path in (f"{self.path}.replaying", self.path) if os.path.exists(path)]

    def pending(self):
        """Does anything wait for recovery (a process that is gone, or the spool before segments)?
        Checked without reading any segment."""
        if self._legacy_paths() and any(os.path.getsize(path) for path in self._legacy_paths()):
            return True
        for fd, _, _ in self._gone():
            os.close(fd)  # closing releases the lock
            return True
        return False

    def contents(self):
        """What every segment (this process's and others') and the spool before segments hold."""
        return Contents().read(self._all_lines())

    def count(self):
        """Records (and interrupted calls) waiting to be written, in every segment and the old spool."""
        records, interrupted = self.contents().unwritten()
        return len(records) + len(interrupted)

    def _all_lines(self):
        paths = sorted(glob.glob(f"{glob.escape(self.path)}.*.wal")) + self._legacy_paths()
        return [line for path in paths for line in _read(path)]

    def recover(self, write, give_back=lambda reservations: None):
        """Write what ended processes (and the spool before segments) left: `write(records) ->
        records inserted` gets their unwritten records, then their interrupted calls, and
        `give_back(reservations)` their abandoned reservations. Returns (written, left): left
        counts what stays for the next recovery (the database was down)."""
        written = left = 0
        with self._recover_lock:
            for fd, lock_path, process in self._gone():
                try:
                    segments = sorted(glob.glob(f"{glob.escape(self.path)}.{glob.escape(process)}.*.wal"))
                    done, remaining = self._recover_files(segments, write, f"process {process}", give_back)
                    written, left = written + done, left + remaining
                    if not remaining:
                        os.remove(lock_path)
                except ConnectionFailure:
                    raise
                except Exception:  # noqa: BLE001 - one process's files never hold up the others'
                    log.exception("Spool: recovering process %s failed; its files stay for the next pass", process)
                    left += 1
                finally:
                    os.close(fd)
            legacy = self._legacy_paths()
            if legacy:
                with open(f"{self.path}.lock", "a") as old_lock:  # what the spool before segments appended under
                    fcntl.flock(old_lock, fcntl.LOCK_EX)
                    done, remaining = self._recover_files(self._legacy_paths(), write, "the spool before segments",
                                                          give_back, exact=True)
                written, left = written + done, left + remaining
        return written, left

    def _recover_files(self, paths, write, whose, give_back, exact=False):
        contents = Contents().read((line for path in paths for line in _read(path)), exact)
        self._set_aside_torn(contents.torn)
        records, interrupted = contents.unwritten()
        if interrupted:
            log.warning("Recovering %d call(s) %s had in flight when it ended: recorded as estimated at their "
                        "budget reservation (outcome interrupted)", len(interrupted), whose)
        try:
            inserted = self.write_each(records + interrupted, write)
            if contents.abandoned():
                give_back(contents.abandoned())
        except ConnectionFailure:
            log.warning("Spool recovery postponed, database unreachable; %d record(s) of %s wait",
                        len(records) + len(interrupted), whose)
            return 0, len(records) + len(interrupted)
        for path in paths:
            if os.path.lexists(path):
                os.remove(path)
        if records or interrupted:
            log.info("Recovered %s: %d record(s) and %d interrupted call(s) written (%d new to the ledger)",
                     whose, len(records), len(interrupted), len(inserted))
        return len(inserted), 0

    def write_each(self, records, write):
        """`write(records)`; after a batch the database refused for what it holds, each record
        alone, setting aside (in <spool>.rejected) those it refuses, so one bad record cannot block
        the others. A lost connection raises (nothing is set aside)."""
        if not records:
            return []
        try:
            return write(records)
        except ConnectionFailure:
            raise
        except Exception:
            pass
        inserted, rejected = [], []
        for record in records:
            try:
                inserted += write([record])
            except ConnectionFailure:
                raise
            except Exception:
                log.exception("Spool: the database refused record %s; kept aside in %s.rejected",
                              record.get("callId"), self.path)
                rejected.append(encode(record))
        if rejected:
            _append(f"{self.path}.rejected", rejected)
        return inserted

    def _set_aside_torn(self, torn):
        if torn:
            log.warning("Spool: %d unreadable line(s) kept aside in %s.torn", len(torn), self.path)
            _append(f"{self.path}.torn", torn)
