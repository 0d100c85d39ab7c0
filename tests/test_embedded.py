"""The embedded store takes the calls production code makes to MongoDB (backend/embedded.py)."""
import sys
import threading

import mongomock
import pytest
from pymongo import ASCENDING, UpdateOne
from pymongo.errors import DuplicateKeyError, OperationFailure

from backend import embedded


@pytest.fixture
def collection():
    embedded.install()
    return mongomock.MongoClient(tz_aware=True).db.things


def test_install_twice_patches_once(collection):
    command = mongomock.database.Database.command
    embedded.install()
    assert mongomock.database.Database.command is command


def test_bulk_write_applies_pymongo_update_ones(collection):
    collection.insert_one({"_id": "a", "n": 1})
    result = collection.bulk_write([UpdateOne({"_id": "a"}, {"$inc": {"n": 2}}),
                                    UpdateOne({"_id": "b"}, {"$inc": {"n": 5}, "$setOnInsert": {"new": True}},
                                              upsert=True)], ordered=False)
    assert (result.matched_count, result.modified_count, result.upserted_count) == (1, 1, 1)
    assert list(collection.find({}, sort=[("_id", ASCENDING)])) == [{"_id": "a", "n": 3},
                                                                    {"_id": "b", "n": 5, "new": True}]


def test_bulk_write_refuses_a_sort_it_cannot_apply(collection):
    collection.insert_one({"_id": "a", "n": 1})
    with pytest.raises(NotImplementedError):
        collection.bulk_write([UpdateOne({}, {"$inc": {"n": 1}}, sort={"n": 1})])


def test_coll_mod_changes_an_index_ttl(collection):
    collection.create_index([("at", ASCENDING)], name="at_1", expireAfterSeconds=60)
    answer = collection.database.command("collMod", "things", index={"name": "at_1", "expireAfterSeconds": 3600})
    assert answer == {"expireAfterSeconds_old": 60, "expireAfterSeconds_new": 3600, "ok": 1.0}
    assert collection.index_information()["at_1"]["expireAfterSeconds"] == 3600
    with pytest.raises(OperationFailure):
        collection.database.command("collMod", "things", index={"name": "missing_1", "expireAfterSeconds": 1})
    assert collection.database.command("ping") == {"ok": 1.0}


def test_unique_indexes_refuse_duplicates_by_lookup(collection):
    collection.insert_many([{"_id": 1, "key": "a"}, {"_id": 2, "key": "b"}])
    collection.create_index([("key", ASCENDING)], unique=True)
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": 3, "key": "a"})
    with pytest.raises(DuplicateKeyError):
        collection.update_one({"_id": 2}, {"$set": {"key": "a"}})
    assert collection.find_one({"_id": 2}) == {"_id": 2, "key": "b"}

    collection.update_one({"_id": 1}, {"$set": {"key": "c"}})   # "a" is free again
    collection.insert_one({"_id": 4, "key": "a"})
    collection.delete_one({"_id": 4})
    collection.insert_one({"_id": 5, "key": "a"})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": 6, "key": "c"})
    # A missing key is null to a unique index: one document may lack it.
    collection.insert_one({"_id": 7})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": 8, "key": None})
    assert sorted(doc["_id"] for doc in collection.find()) == [1, 2, 5, 7]


def test_unique_indexes_over_lists_are_still_checked(collection):
    collection.create_index([("key", ASCENDING)], unique=True)
    collection.insert_one({"_id": 1, "key": ["a", "b"]})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": 2, "key": "a"})
    collection.insert_one({"_id": 3, "key": "c"})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": 4, "key": "c"})


def test_a_recreated_index_sees_documents_written_while_it_was_gone(collection):
    collection.create_index([("key", ASCENDING)], unique=True, name="key_1")
    collection.insert_one({"_id": 1, "key": "a"})
    collection.drop_index("key_1")
    collection.insert_one({"_id": 2, "key": "b"})
    collection.create_index([("key", ASCENDING)], unique=True, name="key_1")
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": 3, "key": "b"})


def test_a_read_never_meets_a_document_another_thread_is_growing():
    """Raw mongomock fails about 4 reads in 10 here ("dictionary changed size during iteration")."""
    embedded.install()
    collection = mongomock.MongoClient()["t"]["c"]
    collection.insert_one({"_id": 1})
    errors = []

    def grow():
        for number in range(2000):
            collection.update_one({"_id": 1}, {"$set": {f"f{number}": number}})

    def read():
        for _ in range(2000):
            try:
                collection.find_one({"_id": 1})
                list(collection.find({"_id": 1}))
            except RuntimeError as exc:
                errors.append(exc)

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=grow), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switching)
    assert errors == [] and len(collection.find_one({"_id": 1})) == 2001


def test_lookups_by_id_or_unique_key_read_one_document_and_stay_right_when_keys_change(monkeypatch):
    import mongomock

    from backend import embedded

    embedded.install()
    people = mongomock.MongoClient().db.people
    people.create_index("email", unique=True)
    people.insert_many([{"_id": n, "email": f"u{n}@example.com", "n": n} for n in range(50)])
    scanned = []
    scan_test = mongomock.collection.filter_applies  # what a full scan calls once per document
    monkeypatch.setattr(mongomock.collection, "filter_applies", lambda *args: scanned.append(1) or scan_test(*args))

    assert people.find_one({"email": "u7@example.com"})["n"] == 7
    assert people.find_one({"_id": 9})["email"] == "u9@example.com"
    assert people.find_one({"email": "u7@example.com", "n": 8}) is None  # the one candidate must match it all
    assert people.update_one({"email": "u3@example.com"}, {"$inc": {"n": 100}}).modified_count == 1
    listed = people.find({"_id": {"$in": [12, 99, 4, 12]}, "n": {"$lt": 10}})
    assert [person["_id"] for person in listed] == [4]  # 99 does not exist, 12 fails the rest of the filter
    assert scanned == []  # none of these scanned the collection
    people.update_one({"_id": 7}, {"$set": {"email": "seven@example.com"}})  # a key changes
    assert people.find_one({"email": "u7@example.com"}) is None
    assert people.find_one({"email": "seven@example.com"})["_id"] == 7
    people.delete_one({"_id": 9})
    assert people.find_one({"_id": 9}) is None and people.count_documents({"email": "u9@example.com"}) == 0
    assert people.find_one({"_id": 3})["n"] == 103
