"""The reconciliation settings: defaults, validation, and admin keys that never reach the logs."""
import logging

import httpx2
import pytest

from backend.config import ConfigError, load_config
from backend.db import get_db
from backend.llm.specs import PROVIDERS
from backend.reconciliation import services
from backend.reconciliation.clients import REPORTS, AnthropicUsageReport, OpenAIUsageReport
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


def test_the_reports_read_are_those_the_provider_declarations_announce():
    declared = {name: spec.usage_report for name, spec in PROVIDERS.items() if spec.usage_report}
    assert set(REPORTS) == set(declared) == {"openai", "anthropic"}
    assert {name: report.admin_key_setting for name, report in REPORTS.items()} == {
        "openai": "OPENAI_ADMIN_KEY", "anthropic": "ANTHROPIC_ADMIN_KEY"}
    config, _ = load_config({"RECONCILE_OPENAI_PROJECT_ID": "proj_1", "RECONCILE_ANTHROPIC_API_KEY_ID": "apikey_1"})
    assert OpenAIUsageReport.filters_from(config) == {"projectId": "proj_1", "apiKeyId": None}
    assert AnthropicUsageReport.filters_from(config) == {"apiKeyId": "apikey_1"}


def test_providers_to_check_follow_the_declarations():
    config, _ = load_config({"GEMINI_API_KEY": "g", "LLM_PROVIDER": "gemini", "ANTHROPIC_ADMIN_KEY": "admin"})
    # Enabled, with ledger records that day, or with an admin key for its report.
    assert services.providers_to_check(config, {"ollama": {}}) == ["gemini", "anthropic", "ollama"]
