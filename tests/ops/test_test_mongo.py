"""TEST_MONGO_URI wiring (no MongoDB server here: what the fixture would do is checked as data)."""
from tests import conftest


def test_without_test_mongo_uri_apps_use_a_fresh_embedded_store_each(make_app):
    first, second = make_app(), make_app()
    assert first.extensions["mongo"].embedded and second.extensions["mongo"].embedded
    assert first.extensions["mongo"].client is not second.extensions["mongo"].client


def test_with_test_mongo_uri_each_app_gets_its_own_database_dropped_after_the_test(tmp_path, monkeypatch):
    class Server:
        dropped = []

        def drop_database(self, name):
            self.dropped.append(name)

    built = []
    monkeypatch.setattr(conftest, "TEST_MONGO_URI", "mongodb://db.test:27017")
    monkeypatch.setattr(conftest, "create_app", lambda config: built.append(config) or config)
    fixture = conftest.make_app.__wrapped__(tmp_path, Server())
    factory = next(fixture)
    one, two = factory(), factory()
    shared = factory(MONGO_CLIENT=object())
    assert {config["MONGO_URI"] for config in built} == {"mongodb://db.test:27017"}
    names = [config["MONGO_DB_NAME"] for config in built]
    assert names[0] != names[1] and names[2] == names[1]
    assert all(name.startswith(f"tokenledger_test_{conftest.RUN_ID}_") and len(name) <= 63 for name in names)
    assert one["TESTING"] and two["JWT_SECRET_KEY"] and shared["MONGO_CLIENT"]
    next(fixture, None)
    assert Server.dropped == names[:2]
