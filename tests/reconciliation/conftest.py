"""An app whose OpenAI and Anthropic usage reports are fakes at the transport, and a fixed clock."""
import pytest

from tests.reconciliation.fakes import UsageReportServer
from tests.reconciliation.support import ANTHROPIC_ADMIN_KEY, NOW, OPENAI_ADMIN_KEY


@pytest.fixture(autouse=True)
def waits(monkeypatch):
    """The pauses between attempts at a usage report, recorded instead of slept (a fake clock)."""
    from backend.reconciliation import clients

    recorded = []
    monkeypatch.setattr(clients, "pause", recorded.append)
    return recorded


@pytest.fixture
def openai_report():
    return UsageReportServer(token_prefix="page_AAAAAGdGxdEiJdKO")


@pytest.fixture
def anthropic_report():
    return UsageReportServer(token_prefix="page_MjAyNS0wNS0xNFQ")


@pytest.fixture
def recon_app(make_app, openai_report, anthropic_report):
    """Keys for both reports (override with None to drop one); the clock stands at NOW."""
    def factory(**overrides):
        settings = {"OPENAI_ADMIN_KEY": OPENAI_ADMIN_KEY, "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN_KEY,
                    "RECONCILE_TRANSPORTS": {"openai": openai_report.transport,
                                             "anthropic": anthropic_report.transport},
                    "CLOCK": lambda: NOW}
        settings.update(overrides)
        return make_app(**settings)

    return factory
