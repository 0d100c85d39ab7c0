"""RAG's similarity search (backend/testcases/vectors.py and embeddings.search) at 1k, 10k and 100k
saved cases in one pool: query latency, the first load, adding a vector after it, and memory.

Usage: python scripts/bench_rag.py [--sizes 1000,10000,100000] [--dimensions 1536] [--queries 60]
                                   [--skip-store]

Pools of random unit vectors (text-embedding-3-small's 1536 dimensions by default). Queries go
round-robin over the sizes, so every size sees the same machine noise; the table gives medians
and the 10th-90th percentile spread, and each size's median as a ratio to the smallest's.
- search: the numpy search of a loaded pool (the top 3 at cosine >= 0.1);
- end to end: embeddings.search on the embedded store: the pool search, then the cases read by id;
- add: putting one more vector into a loaded pool (after the first load: no rebuild);
- first load: building the pool from the stored vectors (decoded float32), once per process;
- memory: the pool's matrix, per 10k vectors (rows in use, and as allocated: up to 25% spare rows).
"""
import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from bson import ObjectId

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.testcases.vectors import Pool, VectorIndex, encode  # noqa: E402

LIMIT, THRESHOLD = 3, 0.1


def vectors(count, dimensions, seed):
    rows = np.random.default_rng(seed).standard_normal((count, dimensions)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def spread(samples):
    ordered = sorted(samples)
    tenth, ninetieth = ordered[len(ordered) // 10], ordered[(len(ordered) * 9) // 10]
    return statistics.median(samples), tenth, ninetieth


def loaded_index(size, dimensions, seed):
    """An index whose one pool holds `size` vectors; returns (index, ids, load seconds, bytes)."""
    ids = [ObjectId() for _ in range(size)]
    rows = [(case_id, vector, 1) for case_id, vector in zip(ids, vectors(size, dimensions, seed))]
    index = VectorIndex(1 << 40, load=lambda owner, key: rows, changed=lambda owner, key, since: [])
    tracemalloc.start()
    started = time.perf_counter()
    index.search("owner", "key", rows[0][1], LIMIT, THRESHOLD)
    load = time.perf_counter() - started
    allocated = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return index, ids, load, allocated


def store_with(sizes, indexes, dimensions):
    """The embedded store holding each pool's cases (so end-to-end reads real documents)."""
    from backend import embedded
    import mongomock

    embedded.install()
    db = mongomock.MongoClient().bench
    for size, (index, ids, *_ ) in zip(sizes, indexes):
        db.testcases.insert_many([{"_id": case_id, "createdBy": f"owner-{size}", "title": f"Case {n}",
                                   "steps": ["Open", "Check"]} for n, case_id in enumerate(ids)])
    return db


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--dimensions", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--skip-store", action="store_true", help="Leave out the end-to-end column.")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    indexes = [loaded_index(size, args.dimensions, seed) for seed, size in enumerate(sizes)]
    db = None if args.skip_store else store_with(sizes, indexes, args.dimensions)
    queries = vectors(args.queries, args.dimensions, 99)
    search = {size: [] for size in sizes}
    end_to_end = {size: [] for size in sizes}
    for query in queries:
        for size, (index, *_ ) in zip(sizes, indexes):
            started = time.perf_counter()
            index.search("owner", "key", query, LIMIT, THRESHOLD)
            search[size].append((time.perf_counter() - started) * 1000)
            if db is not None:
                from backend.testcases import embeddings

                # The pool is keyed by owner; end-to-end reads that owner's cases by id.
                index._pools[(f"owner-{size}", "key")] = index._pools[("owner", "key")]
                started = time.perf_counter()
                embeddings.search(index, db, f"owner-{size}", "key", query, LIMIT, THRESHOLD)
                end_to_end[size].append((time.perf_counter() - started) * 1000)

    adds = {}
    for size, (index, *_ ) in zip(sizes, indexes):
        extra = vectors(200, args.dimensions, 7)
        pool = index._pools[("owner", "key")]
        samples = []
        for vector in extra:
            started = time.perf_counter()
            index.put("owner", "key", ObjectId(), vector, 2)
            samples.append((time.perf_counter() - started) * 1000)
        adds[size] = samples
        assert pool.size == size + 200

    smallest = statistics.median(search[sizes[0]])
    print(f"RAG search, {args.dimensions} dimensions, top {LIMIT} at cosine >= {THRESHOLD}, "
          f"{args.queries} queries per size (median [p10-p90] ms)")
    header = ["cases", "search", "ratio", "end to end", "add one", "first load s", "MiB / 10k rows",
              "MiB / 10k alloc"]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for size, (index, ids, load, allocated) in zip(sizes, indexes):
        pool = index._pools[("owner", "key")]
        median, low, high = spread(search[size])
        row = [f"{size:,}", f"{median:.2f} [{low:.2f}-{high:.2f}]", f"{median / smallest:.1f}x"]
        if end_to_end[size]:
            e_median, e_low, e_high = spread(end_to_end[size])
            row.append(f"{e_median:.2f} [{e_low:.2f}-{e_high:.2f}]")
        else:
            row.append("-")
        a_median, a_low, a_high = spread(adds[size])
        row += [f"{a_median:.3f} [{a_low:.3f}-{a_high:.3f}]", f"{load:.2f}",
                f"{size * args.dimensions * 4 / size * 10_000 / 2**20:.1f}",
                f"{allocated / size * 10_000 / 2**20:.1f}"]
        print(" | ".join(row))
    stored = len(bytes(encode(queries[0])))
    print(f"\nStored vector: {stored} bytes ({args.dimensions} float32 + 2 header bytes); "
          f"pool sizes grow {sizes[-1] // sizes[0]}x from the first to the last row.")


if __name__ == "__main__":
    main()
