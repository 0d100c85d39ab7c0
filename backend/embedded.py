"""The embedded store (mongomock 4.3) made to take the calls production code makes to MongoDB,
so that no code path outside this module depends on which store it runs on.

`install()` patches mongomock's classes once per process (MongoStore.init_app calls it when it
binds an embedded client; calling it again changes nothing):
- bulk_write: pymongo >= 4.11 hands every update and replace of a bulk a `sort` argument that
  mongomock's bulk builder does not take (`unexpected keyword argument 'sort'`);
- the collMod command, which mongomock lacks, changes an index's expireAfterSeconds;
- a unique index is checked by looking the written document's key up, where mongomock scans the
  whole collection on every write (a ledger of n records would cost n^2 to fill);
- a filter that fixes `_id`, or every field of a unique index, by equality reads the one document
  it can match instead of scanning the collection (budget counters, rollup keys, batch notes);
- every collection operation, and the reading of a cursor, holds one re-entrant lock per client
  (`lock_of`): mongomock's documents are plain dicts, and a read that walks one while another
  thread adds a field to it fails ("dictionary changed size during iteration"). MongoDB needs no
  such lock; `backend.db.atomic` hands out the same one for updates that must be atomic.
"""
import threading

from bson import ObjectId
from mongomock import helpers
from mongomock.collection import BulkOperationBuilder, Collection, Cursor
from mongomock.database import Database
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError, OperationFailure

_install_lock = threading.Lock()
_unique_lock = threading.RLock()  # re-entered: a unique check that scans reads through _iter_documents
_installed = False
_client_locks = {}
LOCKED_OPERATIONS = ("find_one", "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "insert_one",
                     "insert_many", "update_one", "update_many", "replace_one", "delete_one", "delete_many",
                     "count_documents", "estimated_document_count", "distinct", "aggregate", "bulk_write",
                     "create_index", "create_indexes", "drop_index", "drop_indexes", "index_information", "drop")


def lock_of(client):
    """The re-entrant lock every operation on this embedded client holds."""
    with _install_lock:
        return _client_locks.setdefault(id(client), threading.RLock())


def _locked(operation):
    def locked(self, *args, **kwargs):
        with lock_of(self.database.client):
            return operation(self, *args, **kwargs)

    return locked


def _locked_cursor(compute):
    def locked(self, *args, **kwargs):
        with lock_of(self.collection.database.client):
            return compute(self, *args, **kwargs)

    return locked


def install():
    global _installed
    with _install_lock:
        if _installed:
            return
        BulkOperationBuilder.add_update = _without_sort(BulkOperationBuilder.add_update)
        BulkOperationBuilder.add_replace = _without_sort(BulkOperationBuilder.add_replace)
        Database.command = _with_coll_mod(Database.command)
        Collection._ensure_uniques = _looked_up(Collection._ensure_uniques)
        Collection._iter_documents = _narrowed(Collection._iter_documents)
        for name in LOCKED_OPERATIONS:
            setattr(Collection, name, _locked(getattr(Collection, name)))
        Cursor._compute_results = _locked_cursor(Cursor._compute_results)
        _installed = True


def _without_sort(add):
    def add_without_sort(self, *args, sort=None, **kwargs):
        if sort is not None:
            raise NotImplementedError("The embedded store cannot sort the documents a bulk update chooses")
        return add(self, *args, **kwargs)

    return add_without_sort


def _with_coll_mod(command):
    def command_with_coll_mod(self, command_name, value=1, **kwargs):
        if command_name != "collMod":
            return command(self, command_name, **kwargs)
        store = self.get_collection(value)._store
        wanted = kwargs["index"]
        index = store.indexes.get(wanted["name"])
        if index is None:
            raise OperationFailure(f"cannot find index {wanted['name']} for ns {self.name}.{value}", 27)
        old = index.get("expireAfterSeconds")
        index["expireAfterSeconds"] = wanted["expireAfterSeconds"]
        store.create_index(wanted["name"], index)  # registers it as a TTL index
        return {"expireAfterSeconds_old": old, "expireAfterSeconds_new": wanted["expireAfterSeconds"], "ok": 1.0}

    return command_with_coll_mod


# Values whose Python equality and hash are MongoDB's equality in an index (True == 1 is not).
_KEY_TYPES = (str, int, ObjectId, type(None))


def _key_values(index, document):
    """The document's values of the index's fields, or None when one is of a kind (a list, a
    sub-document, a boolean, ...) that only a scan compares the way MongoDB does."""
    values = []
    for field, _ in index["key"]:
        try:
            value = helpers.get_value_by_dot(document, field)
        except KeyError:
            value = None
        if type(value) is bool or not isinstance(value, _KEY_TYPES):
            return None
        values.append(value)
    return tuple(values)


def _holders(store, name, index, writing):
    """{key values: _id} of the index, kept on the collection's store and built on first use
    from the documents other than the one being written; None once some key needs a scan. A
    holder may be stale (deleted, or changed since): the caller checks."""
    cached = vars(store).setdefault("_unique_holders", {})
    entry = cached.get(name)
    if entry is None or entry[0] is not index:
        holders = {}
        for document in list(store._documents.values()):
            values = _key_values(index, document)
            if values is None:
                holders = None
                break
            if document["_id"] != writing:
                holders[values] = document["_id"]
        entry = cached[name] = (index, holders)
    return entry[1]


def _looked_up(scan):
    def ensure_uniques(self, new_data):
        store = self._store
        unique = {name: index for name, index in store.indexes.items() if index.get("unique")}
        if any(index.get("sparse") or index.get("partialFilterExpression") for index in unique.values()):
            return scan(self, new_data)
        with _unique_lock:
            for name, index in unique.items():
                holders = _holders(store, name, index, new_data["_id"])
                values = _key_values(index, new_data)
                if holders is None or values is None:
                    store._unique_holders[name] = (index, None)
                    return scan(self, new_data)
                holder = store._documents.get(holders.get(values, new_data["_id"]))
                if holder is not None and holder["_id"] != new_data["_id"] and _key_values(index, holder) == values:
                    raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
                holders[values] = new_data["_id"]

    return ensure_uniques


def _candidates(store, filter):
    """The one document (or none) `filter` can match when it fixes _id (or lists ids with $in), or
    every field of a unique index, to a plain value; None when only a scan can tell (no such field, a value of another
    kind, or a key the unique map does not hold: it may be stale, so a miss is scanned)."""
    if not isinstance(filter, dict) or not filter:
        return None
    if "_id" in filter:
        value = filter["_id"]
        if isinstance(value, dict) and list(value) == ["$in"] and isinstance(value["$in"], list):
            values = value["$in"]  # the documents of a list of ids (RAG's references)
        else:
            values = [value]
        if any(type(value) is bool or not isinstance(value, _KEY_TYPES) for value in values):
            return None
        documents = (store._documents.get(value) for value in dict.fromkeys(values))
        return [document for document in documents if document is not None]
    for name, index in store.indexes.items():
        if not index.get("unique") or index.get("sparse") or index.get("partialFilterExpression"):
            continue
        fields = [field for field, _ in index["key"]]
        if not all(field in filter for field in fields):
            continue
        values = tuple(filter[field] for field in fields)
        if any(type(value) is bool or not isinstance(value, _KEY_TYPES) for value in values):
            continue
        with _unique_lock:
            holders = _holders(store, name, index, None)
            holder = store._documents.get(holders.get(values)) if holders is not None else None
        if holder is not None and _key_values(index, holder) == values:
            return [holder]
        return None
    return None


def _narrowed(scan):
    def iter_documents(self, filter):
        candidates = _candidates(self._store, filter)
        if candidates is None:
            return scan(self, filter)
        return (document for document in candidates if filter_applies(filter, document))

    return iter_documents
