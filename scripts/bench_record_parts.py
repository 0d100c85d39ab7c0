"""What recording one call costs, part by part, on the embedded store.

Usage: python scripts/bench_record_parts.py [--rounds K] [--batch B]

Starts the tracked app of scripts/bench_capture.py (OpenAI's SDK against a zero-latency stub, the
embedded store, settings cleared), makes one real request to get a record exactly as the
recorder spools it, then times, in this one thread with time.process_time (CPU, every thread of
the process), each step recording takes: encoding a record for the spool (orjson, bson's
extended JSON and msgpack side by side: the measurement the spool's encoding was chosen by), the
intent written before the provider call, the record's fsync'd append, and the ledger writer's
steps for batches of B such records (fresh callIds): validation, the batch note, the ledger
insert, budget settlement, the rollup updates and the batch's log line, then a whole writer
pass. The untracked request (the same app without the capture hooks, in a second app of this
process) is timed in the same rounds, alternating with the tracked one. Medians over K rounds
with min-max; the last row gives tracked/untracked if recording cost only its parts.
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
    (record,) = spool.contents().records
    writer.replay()

    import msgpack

    from backend.budgets.services import settle_written
    from backend.clock import utc_now
    from backend.usage import recorder, rollups, spool as spool_module, writer as ledger_writer
    from backend.usage import repository as ledger

    def packed(value):
        return msgpack.ExtType(1, value.binary) if isinstance(value, ObjectId) else value.isoformat()

    batch = args.batch
    names = ("request, untracked (whole request)", "request, tracked (whole request, writer pass excluded)",
             "encode a record: orjson (the spool's)", "encode a record: bson extended JSON (the spool before)",
             "encode a record: msgpack", "decode a record: orjson + types (the spool's)",
             "decode a record: bson extended JSON", "intent before the provider call (encode + write), per request",
             "record append (encode + write + fsync), per request", "writer: validate (BSON encode), per record",
             "writer: batch note and its removal, per record", "writer: ledger insert_many, per record",
             "writer: budget settlement, per record", "writer: rollup updates, per record",
             "writer: the batch's log line, per record", "writer: whole pass (all of the above), per record")
    parts = {name: [] for name in names}
    line = spool_module.encode(record)
    for _ in range(args.rounds):
        for bench, name in ((untracked, names[0]), (tracked, names[1])):
            parts[name].append(_cpu(bench.post, REQUESTS_PER_ROUND))
        writer.replay()
        parts[names[2]].append(_cpu(lambda: spool_module.encode(record), 200))
        parts[names[3]].append(_cpu(lambda: json_util.dumps(record, json_options=spool_module.JSON_OPTIONS), 200))
        parts[names[4]].append(_cpu(lambda: msgpack.packb(record, default=packed, datetime=False), 200))
        parts[names[5]].append(_cpu(lambda: spool_module.decode(line), 200))
        parts[names[6]].append(_cpu(lambda: json_util.loads(line, json_options=spool_module.JSON_OPTIONS), 200))
        parts[names[7]].append(_cpu(lambda: writer.intend(_fresh(record)), batch))
        parts[names[8]].append(_cpu(lambda: spool.append([_fresh(record)]), batch))
        with tracked.app.app_context():
            db = tracked.db
            records = [_fresh(record) for _ in range(batch)]
            documents = [{key: value for key, value in r.items() if key != recorder.BUDGET_TICKET} for r in records]
            parts[names[9]].append(_cpu(lambda: [recorder.storable(d) for d in documents]) / batch)
            note = str(ObjectId())
            parts[names[10]].append(_cpu(lambda: (ledger.open_batch(db, note, [d["callId"] for d in documents],
                                                                    {r["callId"]: r[recorder.BUDGET_TICKET] for r in records}),
                                                  ledger.close_batch(db, note))) / batch)
            parts[names[11]].append(_cpu(lambda: ledger.insert_records(db, documents)) / batch)
            parts[names[12]].append(
                _cpu(lambda: settle_written(db, [(d, r[recorder.BUDGET_TICKET]) for d, r in zip(documents, records)],
                                          utc_now(), note)) / batch)
            parts[names[13]].append(_cpu(lambda: rollups.apply(db, documents)) / batch)
            parts[names[14]].append(_cpu(lambda: ledger_writer.log_batch(note, documents)) / batch)
            fresh = [_fresh(record) for _ in range(batch)]
            spool.append(fresh)
            writer._enqueue(fresh)
            parts[names[15]].append(_cpu(writer.replay) / batch)

    medians = {name: statistics.median(values) for name, values in parts.items()}
    print(f"store=embedded (mongomock) rounds={args.rounds} batch={batch} requests per round={REQUESTS_PER_ROUND}; "
          "CPU ms, median (min-max)")
    print("| part | CPU ms |")
    print("|---|---:|")
    for name, values in parts.items():
        print(f"| {name} | {medians[name]:.3f} ({min(values):.3f}-{max(values):.3f}) |")
    untracked_ms = medians[names[0]]
    print(f"| tracked / untracked if recording cost only the record's append and the writer pass | "
          f"{(untracked_ms + medians[names[8]] + medians[names[15]]) / untracked_ms:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
