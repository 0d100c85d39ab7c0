"""Budgets around one generation request: reserve before the call, settle or release after,
and queue the alerts the new totals cross. Request-path glue; the rules live in budgets/."""
import logging

from flask import current_app
from pymongo.errors import PyMongoError

from backend.alerts.services import queue_crossings
from backend.budgets import services as budgets
from backend.clock import utc_now
from backend.db import get_db
from backend.metrics import metrics
from backend.testgen import services

log = logging.getLogger(__name__)


class Spend:
    def __init__(self, user, plan, settings):
        self.user = user
        self.db = get_db()
        now = utc_now()
        tokens, cost = services.worst_case(plan, settings, now)
        try:
            self.reservation = budgets.reserve(self.db, user["_id"], tokens, cost, now)
        except budgets.BudgetExceeded as exc:
            metrics().budget_rejections.labels(exc.data["window"]).inc()
            raise
        except PyMongoError:
            # A budget store that is down must not take generation down with it.
            log.exception("Budget reservation skipped: database unavailable")
            self.reservation = budgets.Reservation(user["_id"])

    def release(self):
        self._settle([])

    def settle(self, calls):
        self._settle([call for call in calls if call.usage.reported])

    def _settle(self, calls):
        tokens = sum(call.usage.total_tokens for call in calls)
        cost = sum(call.price.cost for call in calls)
        config = current_app.config
        now = utc_now()
        try:
            counters = budgets.settle(self.db, self.reservation, tokens, cost)
            subject = {"key": str(self.user["_id"]), "label": self.user["email"]}
            for counter in counters:
                token_limit, usd_limit = budgets.window_limits_usd(self.reservation.limits, counter["window"])
                for unit, used, limit in (("tokens", counter["tokens"], token_limit),
                                          ("usd", budgets.to_usd(counter["costUnits"]), usd_limit)):
                    if limit is not None:
                        queue_crossings(self.db, subject, counter["window"], counter["period"], unit, used, limit,
                                        config["ALERT_THRESHOLDS"], now)
            global_limit = config["GLOBAL_DAILY_SPEND_LIMIT_USD"]
            if cost and global_limit is not None:
                spent = budgets.add_global_spend(self.db, cost, now)
                queue_crossings(self.db, {"key": budgets.GLOBAL, "label": "The whole service"}, "day",
                                spent["period"], "usd", budgets.to_usd(spent["costUnits"]), float(global_limit),
                                config["ALERT_THRESHOLDS"], now)
        except PyMongoError:
            log.exception("Budget settlement failed for user %s", self.user["email"])
