"""The similarity index each process keeps of saved cases' embeddings: one pool per owner and
vector key (provider/model/dimensions: vectors of different models are never compared).

A pool is a float32 matrix of unit vectors, one row per case, grown a quarter at a time (adding a
vector costs amortised O(1), never a rebuild), so a query is one matrix-vector product: cosine for every
case at once. Pools are loaded on their first query and kept up to date incrementally: this
process's own writes go in at once, other processes' are read (only what changed since the pool
last looked) at most every REFRESH_SECONDS. The least recently searched pools are dropped when
the index holds more than its byte budget (RAG_INDEX_MAX_MB).
"""
import threading
import time
from collections import OrderedDict

import numpy as np
from bson.binary import Binary, BinaryVectorDtype

# How stale another process's writes may be in this one's pools.
REFRESH_SECONDS = 2.0
INITIAL_ROWS = 16


def encode(vector):
    """A vector as MongoDB stores it: BSON binary vector, float32 (Atlas Vector Search indexes it)."""
    return Binary.from_vector([float(value) for value in vector], BinaryVectorDtype.FLOAT32)


def decode(binary):
    """The float32 array of a stored vector (its two header bytes are the dtype and the padding)."""
    return np.frombuffer(bytes(binary), dtype="<f4", offset=2)


def unit(vector):
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


class Pool:
    def __init__(self, dimensions):
        self.dimensions = dimensions
        self.matrix = np.empty((INITIAL_ROWS, dimensions), dtype=np.float32)
        self.ids = []
        self.rows = {}
        self.seen_until = None  # the newest updatedAt read from the store
        self.checked_at = time.monotonic()
        self.lock = threading.Lock()

    @property
    def size(self):
        return len(self.ids)

    @property
    def nbytes(self):
        return self.matrix.nbytes

    def put(self, case_id, vector):
        self.put_many([case_id], [vector])

    def put_many(self, case_ids, vectors):
        """Add or replace vectors (normalised together: a first load is one numpy pass)."""
        kept = [(case_id, vector) for case_id, vector in zip(case_ids, vectors)
                if np.shape(vector) == (self.dimensions,)]  # another length than the pool's: never compared
        if not kept:
            return
        block = np.asarray([vector for _, vector in kept], dtype=np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block = np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)
        rows = []
        for case_id, _ in kept:
            row = self.rows.get(case_id)
            if row is None:
                row = self.rows[case_id] = len(self.ids)
                self.ids.append(case_id)
            rows.append(row)
        if len(self.ids) > len(self.matrix):
            # A quarter more room than needed: at most 25% spare, and each row is copied about four
            # times over the pool's growth (amortised O(1) per vector).
            capacity = len(self.ids) + len(self.ids) // 4
            grown = np.empty((capacity, self.dimensions), dtype=np.float32)
            grown[:len(self.matrix)] = self.matrix
            self.matrix = grown
        self.matrix[rows] = block

    def drop(self, case_id):
        row = self.rows.pop(case_id, None)
        if row is None:
            return
        last = self.size - 1
        if row != last:  # the last row moves into the hole
            moved = self.ids[last]
            self.matrix[row] = self.matrix[last]
            self.ids[row], self.rows[moved] = moved, row
        self.ids.pop()

    def top(self, query, limit, threshold):
        """[(case id, cosine)] of the cases at `threshold` or above, best first, at most `limit`."""
        if not self.size or limit <= 0:
            return []
        scores = self.matrix[:self.size] @ unit(query)
        hits = np.flatnonzero(scores >= np.float32(threshold))
        if len(hits) > limit:
            hits = hits[np.argpartition(-scores[hits], limit - 1)[:limit]]
        ordered = sorted(hits.tolist(), key=lambda row: (-scores[row], str(self.ids[row])))
        return [(self.ids[row], float(scores[row])) for row in ordered]


class VectorIndex:
    """Pools by (owner, key), within `max_bytes`. `load(owner, key)` and `changed(owner, key, since)`
    read the store: [(case id, vector, updatedAt)]."""

    def __init__(self, max_bytes, load, changed):
        self.max_bytes = max_bytes
        self._load, self._changed = load, changed
        self._pools = OrderedDict()
        self._lock = threading.Lock()

    def pool(self, owner, key, dimensions):
        """The up-to-date pool of an owner's vectors of one key (loaded on first use)."""
        with self._lock:
            pool = self._pools.get((owner, key))
            if pool is not None:
                self._pools.move_to_end((owner, key))
        if pool is None:
            pool = Pool(dimensions)
            with pool.lock:
                self._apply(pool, self._load(owner, key))
            with self._lock:
                pool = self._pools.setdefault((owner, key), pool)
                self._evict()
        elif time.monotonic() - pool.checked_at >= REFRESH_SECONDS:
            with pool.lock:
                pool.checked_at = time.monotonic()
                self._apply(pool, self._changed(owner, key, pool.seen_until))
        return pool

    def search(self, owner, key, query, limit, threshold):
        query = np.asarray(query, dtype=np.float32)
        pool = self.pool(owner, key, len(query))
        with pool.lock:
            return pool.top(query, limit, threshold)

    def put(self, owner, key, case_id, vector, updated_at):
        """This process wrote a vector: a loaded pool takes it at once."""
        with self._lock:
            pool = self._pools.get((owner, key))
        if pool is not None:
            with pool.lock:
                self._apply(pool, [(case_id, vector, updated_at)])

    def drop(self, owner, case_id):
        """A case is gone: out of every pool of its owner in this process."""
        with self._lock:
            pools = [pool for (who, _), pool in self._pools.items() if who == owner]
        for pool in pools:
            with pool.lock:
                pool.drop(case_id)

    @staticmethod
    def _apply(pool, rows):
        if not rows:
            return
        pool.put_many([case_id for case_id, _, _ in rows], [vector for _, vector, _ in rows])
        newest = max(updated_at for _, _, updated_at in rows)
        if pool.seen_until is None or newest > pool.seen_until:
            pool.seen_until = newest

    def _evict(self):
        total = sum(pool.nbytes for pool in self._pools.values())
        while total > self.max_bytes and len(self._pools) > 1:
            _, oldest = self._pools.popitem(last=False)
            total -= oldest.nbytes

    @property
    def nbytes(self):
        with self._lock:
            return sum(pool.nbytes for pool in self._pools.values())
