"""The reconciliation settings: defaults, validation, and admin keys that never reach the logs."""
import logging

import httpx2
import pytest

from backend.config import ConfigError, load_config
from backend.db import get_db
from backend.reconciliation import services
from tests.reconciliation.support import DAY, NOW, OPENAI_ADMIN_KEY


def test_defaults():
    config, _ = load_config({})
    assert (config["OPENAI_ADMIN_KEY"], config["ANTHROPIC_ADMIN_KEY"]) == (None, None)
    assert (config["RECONCILE_TOLERANCE"], config["RECONCILE_SETTLE_HOURS"]) == (0, 6)
    assert config["RECONCILE_OPENAI_PROJECT_ID"] is None


@pytest.mark.parametrize("env, message", [
    ({"RECONCILE_TOLERANCE": "-1"}, "RECONCILE_TOLERANCE must be between 0 and 1000000000, got -1"),
    ({"RECONCILE_SETTLE_HOURS": "soon"}, "RECONCILE_SETTLE_HOURS must be a whole number, got 'soon'"),
    ({"RECONCILE_SETTLE_HOURS": "100"}, "RECONCILE_SETTLE_HOURS must be between 0 and 72, got 100"),
])
def test_invalid_settings_name_the_setting(env, message):
    with pytest.raises(ConfigError) as raised:
        load_config(env)
    assert str(raised.value) == message


def test_the_admin_key_is_never_logged(recon_app, openai_report, caplog):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.fail_with(httpx2.Response(401, content=f"bad key {OPENAI_ADMIN_KEY}".encode()))
    with caplog.at_level(logging.DEBUG), app.app_context():
        services.reconcile_day(get_db(app), app.config, DAY, NOW)
    assert "OpenAI usage report answered 401" in caplog.text
    assert OPENAI_ADMIN_KEY not in caplog.text
