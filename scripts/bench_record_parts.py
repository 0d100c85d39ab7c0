"""What recording one call costs, part by part, on the embedded store: the floor under issue 13's ratio.

Usage: python scripts/bench_record_parts.py [--rounds K] [--batch B]

Starts the tracked app of scripts/bench_capture.py (OpenAI's SDK against a zero-latency stub, the
embedded store, settings cleared), makes one real request to get a record exactly as the
recorder spools it, then times, in this one thread with time.process_time (CPU, every thread of
the process), each step the ledger writer takes for batches of B such records (fresh callIds):
the request's fsync'd spool append, the writer's spool rotation and parsing, validation, the
ledger insert, budget settlement, the rollup updates and the log lines, then a whole writer
pass. The untracked request (the same app without the capture hooks, in a second app of this
process) is timed in the same rounds, alternating with the tracked one. Medians over K rounds
with min-max; the last rows give tracked/untracked if recording cost only its parts.
"""
import argparse
import logging
import os
import statistics
import sys
import time

import bench_capture
from bson import ObjectId, json_util

ROUNDS = 7
BATCH = 16
REQUESTS_PER_ROUND = 64


def _fresh(record):
    call_id = ObjectId()
    return {**record, "_id": call_id, "callId": str(call_id)}


def _cpu(step, repeat=1):
    started = time.process_time()
    for _ in range(repeat):
        step()
    return (time.process_time() - started) * 1000 / repeat


def main():
    if os.environ.get("MONGO_URI"):
        # The parts are timed in this process against the embedded store; with MONGO_URI set the
        # figures would silently be those of another store than the one asked for.
        sys.exit("bench_record_parts.py measures the embedded store only: unset MONGO_URI "
                 "(scripts/bench_capture.py measures a MongoDB server)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds (default {ROUNDS})")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"records per writer pass (default {BATCH})")
    args = parser.parse_args()
    sys.path.insert(0, str(bench_capture.ROOT))
    from backend.runtime import runtime
    from backend.usage.writer import LedgerWriter

    # The writer's passes run here, on this thread, so that each part is timed alone.
    LedgerWriter._start = lambda self: None
    tracked = bench_capture.Bench("openai", "tracked", {})
    untracked = bench_capture.Bench("openai", "untracked", {})
    logging.getLogger("backend.usage").setLevel(logging.INFO)
    spool, writer = runtime(tracked.app).spool, runtime(tracked.app).writer
    tracked.post()
    (record,) = spool._parse(spool._read_lines(spool.path))
    writer.replay()

    from backend.budgets.services import settle_written
    from backend.clock import utc_now
    from backend.usage import recorder, rollups, writer as ledger_writer
    from backend.usage import repository as ledger
    from backend.usage.spool import JSON_OPTIONS

    batch = args.batch
    parts = {name: [] for name in (
        "request, untracked (whole request)", "request, tracked (whole request, writer pass excluded)",
        "spool append (json + locked, fsync'd write), per request",
        "writer: spool rotation (read, .replaying fsync'd, remove), per record",
        "writer: parse the spooled json, per record", "writer: validate (BSON encode), per record",
        "writer: ledger insert_many, per record", "writer: budget settlement, per record",
        "writer: rollup updates, per record", "writer: log line, per record",
        "writer: whole pass (all of the above), per record")}
    for _ in range(args.rounds):
        for bench, name in ((untracked, "request, untracked (whole request)"),
                            (tracked, "request, tracked (whole request, writer pass excluded)")):
            parts[name].append(_cpu(bench.post, REQUESTS_PER_ROUND))
        writer.replay()
        with tracked.app.app_context():
            db = tracked.db
            records = [_fresh(record) for _ in range(batch)]
            parts["spool append (json + locked, fsync'd write), per request"].append(
                _cpu(lambda: spool.append([_fresh(record)]), batch))
            lines = spool._read_lines(spool.path)
            parts["writer: spool rotation (read, .replaying fsync'd, remove), per record"].append(
                _cpu(lambda: spool.replay(lambda rows: rows)) / batch)
            parts["writer: parse the spooled json, per record"].append(
                _cpu(lambda: [json_util.loads(line, json_options=JSON_OPTIONS) for line in lines]) / batch)
            documents = [{key: value for key, value in r.items() if key != recorder.BUDGET_TICKET} for r in records]
            parts["writer: validate (BSON encode), per record"].append(
                _cpu(lambda: [recorder.storable(d) for d in documents]) / batch)
            parts["writer: ledger insert_many, per record"].append(
                _cpu(lambda: ledger.insert_records(db, documents)) / batch)
            parts["writer: budget settlement, per record"].append(
                _cpu(lambda: settle_written(db, [(d, r[recorder.BUDGET_TICKET]) for d, r in zip(documents, records)],
                                          utc_now())) / batch)
            parts["writer: rollup updates, per record"].append(_cpu(lambda: rollups.apply(db, documents)) / batch)
            parts["writer: log line, per record"].append(
                _cpu(lambda: [ledger_writer.log_tracked(r) for r in records]) / batch)
            spool.append([_fresh(record) for _ in range(batch)])
            parts["writer: whole pass (all of the above), per record"].append(_cpu(writer.replay) / batch)

    medians = {name: statistics.median(values) for name, values in parts.items()}
    print(f"store=embedded (mongomock) rounds={args.rounds} batch={batch} requests per round={REQUESTS_PER_ROUND}; "
          "CPU ms, median (min-max)")
    print("| part | CPU ms |")
    print("|---|---:|")
    for name, values in parts.items():
        print(f"| {name} | {medians[name]:.3f} ({min(values):.3f}-{max(values):.3f}) |")
    untracked_ms = medians["request, untracked (whole request)"]
    append = medians["spool append (json + locked, fsync'd write), per request"]
    whole = medians["writer: whole pass (all of the above), per record"]
    floor = append + medians["writer: ledger insert_many, per record"] + medians["writer: rollup updates, per record"]
    print(f"| tracked / untracked if recording cost only the append and the writer pass | "
          f"{(untracked_ms + append + whole) / untracked_ms:.2f}x |")
    print(f"| tracked / untracked if it cost only the append, the ledger insert and the rollups | "
          f"{(untracked_ms + floor) / untracked_ms:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
