"""No lost records: usage the database refuses is spooled, then replayed exactly once."""
import glob
import json
import logging

import mongomock
import pytest
from bson import ObjectId, json_util
from pymongo.errors import AutoReconnect

from backend import background
from backend.db import USAGE, get_db
from backend.usage import rollups
from backend.usage.spool import Spool, encode
from backend.runtime import runtime
from tests.helpers import create_user, left_by_a_gone_process, read_events, usage_record, utc


@pytest.fixture
def database_down(monkeypatch):
    """Every ledger write fails as it does when MongoDB is unreachable; undo() brings it back."""
    insert_many = mongomock.collection.Collection.insert_many

    def refuse(self, *args, **kwargs):
        if self.name == USAGE:
            raise AutoReconnect("connection refused")
        return insert_many(self, *args, **kwargs)

    monkeypatch.setattr(mongomock.collection.Collection, "insert_many", refuse)
    return monkeypatch


def ledger(app):
    with app.app_context():
        return list(get_db()[USAGE].find())


def metric_values(client):
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").get_data(as_text=True)
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


def test_a_database_outage_loses_no_record_and_replays_each_once(app, client, user_headers, database_down):
    requests = [("/api/test-generation", {"prompt": "Login", "count": 2}),
                ("/api/test-generation", {"prompt": "Logout", "count": 1}),
                ("/api/testcases/generate-with-ai", {"prompt": "Search", "count": 1}),
                ("/api/testcases/generate-and-save-with-ai", {"prompt": "Cart", "count": 1})]
    call_ids = []
    for path, body in requests:
        response = client.post(path, json=body, headers=user_headers)
        assert response.status_code in (200, 201), response.json
        assert len(response.json["data"]["testCases"]) == body["count"]
        call_ids += response.json["data"].get("usage", response.json["data"].get("tokenUsage", {})).get("callIds", [])
    streamed = client.post("/api/test-generation", json={"prompt": "Pay", "count": 1, "stream": True},
                           headers=user_headers)
    assert read_events(streamed)[-1][0] == "done"
    call_ids.append(read_events(streamed)[-1][1]["data"]["usage"]["callIds"][0])

    spool = runtime(app).spool
    spooled = spool.contents().records
    assert len(spooled) == 5 and ledger(app) == []
    assert isinstance(spooled[0]["userId"], ObjectId) and spooled[0]["timestamp"].tzinfo is not None
    assert len(set(r["callId"] for r in spooled)) == 5
    assert {r["callId"] for r in spooled} >= set(call_ids)

    background.run_once(app)  # still down: the replay fails and keeps every record
    assert spool.count() == 5 and ledger(app) == []

    database_down.undo()
    background.run_once(app)
    background.run_once(app)

    records = ledger(app)
    assert sorted(r["callId"] for r in records) == sorted(r["callId"] for r in spooled)
    assert spool.count() == 0
    with app.app_context():
        assert rollups.check(get_db()) == []
    values = metric_values(client)
    assert values["tokenledger_usage_write_failures_total"] == 5
    assert values["tokenledger_usage_spooled_total"] == 5
    assert values["tokenledger_usage_replayed_total"] == 5
    assert values["tokenledger_usage_writes_total"] == 5


def test_what_a_gone_process_spooled_is_written_once_even_when_part_was_written_before(app, caplog):
    caplog.set_level(logging.INFO, logger="backend.usage")
    user = create_user(app, "dev@example.com")
    records = [usage_record(user, utc(2026, 11, 20, hour), prompt=100 * hour) for hour in (1, 2, 3, 4)]
    writer = runtime(app).writer
    with app.app_context():
        db = get_db()
        # The first two reached the ledger before the process died; the fourth was marked written.
        writer.write([dict(r) for r in records[:2]])
        writer.write([dict(records[3])])
        left_by_a_gone_process(writer.spool.path, *[("r", r) for r in records], ("x", [records[3]["callId"]]))
        assert writer.spool.pending() and writer.spool.count() == 3
        assert writer.replay() == (1, 0)
        assert writer.replay() == (0, 0) and not writer.spool.pending()
        assert (f"2 record(s) already in the ledger (written before: a retry or a recovery); callIds "
                f"{records[0]['callId']}, {records[1]['callId']}") in caplog.text
        assert sorted(r["promptTokens"] for r in db[USAGE].find()) == [100, 200, 300, 400]
        assert rollups.check(db) == []
        assert sum(d["requests"] for d in db["openai_token_usage_daily"].find()) == 4
    assert glob.glob(writer.spool.path + ".4242-*") == []


def test_a_live_process_spool_is_never_recovered_by_another(app, tmp_path):
    user = create_user(app, "dev@example.com")
    live = Spool(str(tmp_path / "spool.jsonl"))
    live.append([usage_record(user, utc(2026, 11, 20))])
    writer = runtime(app).writer
    assert not writer.spool.pending() and writer.replay() == (0, 0)
    assert ledger(app) == [] and live.count() == 1


def test_the_spool_is_one_json_document_per_line_typed_on_the_way_back(tmp_path):
    spool = Spool(str(tmp_path / "deep" / "spool.jsonl"))
    when, user = utc(2026, 11, 20, 9), ObjectId()
    spool.intend({"callId": "a", "n": 1, "userId": user, "timestamp": when})
    spool.append([{"callId": "a", "n": 2, "userId": user, "timestamp": when}, {"callId": "b", "n": 3}])
    spool.resolve(["b"])
    [segment] = glob.glob(str(tmp_path / "deep" / "spool.jsonl.*.wal"))
    written = open(segment, "rb").read()
    assert len(written) == 128 * 1024  # zero-filled ahead of its lines
    lines = [json.loads(line) for line in written.split(b"\0")[0].splitlines()]
    assert [(line["k"], line.get("d", {}).get("callId"), line.get("ids")) for line in lines] == [
        ("i", "a", None), ("r", "a", None), ("r", "b", None), ("x", None, ["b"])]
    assert lines[1]["d"]["userId"] == {"$oid": str(user)} and lines[1]["d"]["timestamp"] == {"$date": "2026-11-20T09:00:00.000Z"}
    records, interrupted = spool.contents().unwritten()
    assert records == [{"callId": "a", "n": 2, "userId": user, "timestamp": when}] and interrupted == []
    assert records[0]["timestamp"].tzinfo is not None


def test_the_spool_of_the_version_before_segments_is_written_too(app):
    user = create_user(app, "dev@example.com")
    records = [usage_record(user, utc(2026, 11, 20, hour)) for hour in (1, 2)]
    spool = runtime(app).spool
    with open(spool.path, "w", encoding="utf-8") as handle:  # extended JSON, one record per line
        handle.writelines(json_util.dumps(record) + "\n" for record in records)
    assert spool.pending() and runtime(app).writer.replay() == (2, 0)
    assert sorted(r["callId"] for r in ledger(app)) == sorted(r["callId"] for r in records)
    assert not spool.pending()


def test_replay_spool_command_reports_and_fails_while_records_remain(app, database_down):
    user = create_user(app, "dev@example.com")
    left_by_a_gone_process(runtime(app).spool.path, ("r", usage_record(user, utc(2026, 11, 20))),
                           ("r", usage_record(user, utc(2026, 11, 21))))
    runner = app.test_cli_runner()

    down = runner.invoke(args=["replay-spool"])
    assert down.exit_code == 1
    assert down.output.startswith("replayed 0 record(s) from ") and down.output.endswith("; 2 still spooled\n")

    database_down.undo()
    up = runner.invoke(args=["replay-spool"])
    assert up.exit_code == 0 and up.output.endswith("; 0 still spooled\n") and "replayed 2 record(s)" in up.output
    assert len(ledger(app)) == 2


def test_when_the_spool_cannot_be_written_either_the_response_still_stands(make_app, tmp_path, database_down,
                                                                          caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = make_app(SPOOL_PATH=str(blocker / "spool.jsonl"))
    create_user(app, "dev@example.com")
    client = app.test_client()
    from tests.helpers import bearer

    with caplog.at_level(logging.ERROR, logger="backend.usage"):
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                               headers=bearer(client, "dev@example.com"))
    assert response.status_code == 200
    assert "Spooling 1 usage record(s) failed too; callIds: " + response.json["data"]["usage"]["callIds"][0] in caplog.text


def test_a_request_that_needs_the_database_while_it_is_down_gets_a_503(client, user_headers, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AutoReconnect("connection refused")

    monkeypatch.setattr(mongomock.collection.Collection, "insert_many", refuse)
    response = client.post("/api/testcases/generate-and-save-with-ai", json={"prompt": "Cart", "count": 1},
                           headers=user_headers)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json == {"success": False, "message": "The database is unavailable; please try again shortly"}


def test_full_segments_are_sealed_and_removed_once_everything_in_them_is_written(tmp_path, monkeypatch):
    from backend.usage import spool as spool_module

    monkeypatch.setattr(spool_module, "FIRST_SEGMENT_BYTES", 4096)
    spool = Spool(str(tmp_path / "spool.jsonl"))
    records = [{"callId": f"c{n}", "padding": "x" * 900} for n in range(12)]
    for record in records:
        spool.intend(record)
        spool.append([record])
    segments = sorted(glob.glob(str(tmp_path / "spool.jsonl.*.wal")))
    assert len(segments) >= 3 and spool.count() == 12
    spool.resolve([record["callId"] for record in records[:-1]])
    # Every sealed segment is resolved and gone; the one being written stays.
    assert glob.glob(str(tmp_path / "spool.jsonl.*.wal")) == segments[-1:]
    assert [record["callId"] for record in spool.contents().unwritten()[0]] == ["c11"]


@pytest.mark.parametrize("fsync, syncs", [(True, 3), (False, 0)])
def test_records_are_fsyncd_before_the_answer_unless_spool_fsync_is_off(make_app, monkeypatch, fsync, syncs):
    import os

    app = make_app(SPOOL_FSYNC=fsync, LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=600_000)
    create_user(app, "dev@example.com")
    client = app.test_client()
    from tests.helpers import bearer

    headers = bearer(client, "dev@example.com")
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    for _ in range(3):
        assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 200
    assert len(synced) == syncs
    assert runtime(app).writer.replay() == (3, 0) and len(ledger(app)) == 3


def test_junk_in_the_spool_folder_is_set_aside_and_never_holds_up_a_recovery(app, tmp_path):
    import os

    user = create_user(app, "dev@example.com")
    path = runtime(app).spool.path
    good = [usage_record(user, utc(2026, 11, 20, hour)) for hour in (1, 2, 3)]
    # A gone process whose segment holds a record, then a NUL byte mid-line, then two more records.
    left_by_a_gone_process(path, ("r", good[0]), process="1-aaaa",
                           raw=b'{"k": "r", "d": {"call\0Id": "x"}}\n' + b"".join(
                               encode({"k": "r", "d": record}) for record in good[1:]) + b"\0" * 64)
    # Junk named like the spool's files: a folder as a lock, a FIFO and a folder as segments,
    # lines that are JSON but not entries ($oid that is no ObjectId, ids that are not strings).
    os.mkdir(f"{path}.0-dir.lock")
    left_by_a_gone_process(path, process="0-fifo")
    os.remove(f"{path}.0-fifo.000001.wal")
    os.mkfifo(f"{path}.0-fifo.000001.wal")
    left_by_a_gone_process(path, process="0-folder")
    os.remove(f"{path}.0-folder.000001.wal")
    os.mkdir(f"{path}.0-folder.000001.wal")
    left_by_a_gone_process(path, process="0-odd", raw=b'{"k": "r", "d": {"callId": "zz", "userId": {"$oid": "zz"}}}\n'
                                                      b'{"k": "x", "ids": [[1]]}\n{"k": "i", "d": {"callId": [1]}}\n')

    assert runtime(app).writer.replay() == (3, 0)
    assert sorted(r["callId"] for r in ledger(app)) == sorted(r["callId"] for r in good)
    assert len((tmp_path / "spool.jsonl.torn").read_bytes().splitlines()) == 4
    junk = sorted(name for name in os.listdir(tmp_path) if name.endswith(".junk"))
    assert junk == ["spool.jsonl.0-dir.lock.junk", "spool.jsonl.0-fifo.000001.wal.junk",
                    "spool.jsonl.0-folder.000001.wal.junk"]
    assert runtime(app).writer.replay() == (0, 0) and not runtime(app).spool.pending()


def test_concurrent_requests_share_fsyncs_and_each_waits_for_its_own(tmp_path, monkeypatch):
    """Group commit: 8 threads appending at once need far fewer fsyncs than appends, and no append
    returns before an fsync that began after its line was written."""
    import os
    import threading
    import time

    spool = Spool(str(tmp_path / "spool.jsonl"))
    lines, flushed, syncs, lock = [], [0], [0], threading.Lock()
    real_write, real_sync = os.pwrite, os.fdatasync

    def write(fd, data, offset):
        result = real_write(fd, data, offset)
        with lock:
            lines.append(data)
        return result

    def sync(fd):  # a disk that takes 2 ms per flush, so that appends pile up behind one
        with lock:
            covered = len(lines)
        time.sleep(0.002)
        real_sync(fd)
        with lock:
            flushed[0], syncs[0] = max(flushed[0], covered), syncs[0] + 1

    monkeypatch.setattr(os, "pwrite", write)
    monkeypatch.setattr(os, "fdatasync", sync)
    returned_early = []

    def requests(n):
        for i in range(25):
            spool.append([{"callId": f"{n}-{i}"}])
            with lock:
                position = next(k for k, data in enumerate(lines) if f'"{n}-{i}"'.encode() in data) + 1
                if flushed[0] < position:
                    returned_early.append((n, i))

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert returned_early == [] and len(spool.contents().records) == 200
    assert syncs[0] < 100  # 200 appends


def test_two_workers_recovering_one_dead_process_write_its_records_once(tmp_path):
    path = str(tmp_path / "spool.jsonl")
    records = [{"callId": f"c{n}"} for n in range(3)]
    left_by_a_gone_process(path, *[("r", record) for record in records])
    first, second = Spool(path), Spool(path)
    written_by = {"first": [], "second": []}

    def second_worker(batch):
        written_by["second"].extend(batch)
        return batch

    def first_worker(batch):
        # The other worker's pass runs while this one holds the dead process's lock.
        assert second.recover(second_worker) == (0, 0)
        written_by["first"].extend(batch)
        return batch

    assert first.recover(first_worker) == (3, 0)
    assert second.recover(second_worker) == (0, 0)  # and once it is done, nothing is left
    assert written_by == {"first": records, "second": []}
