"""Reconciliation: the ledger compared, per provider, model and UTC day, with the providers' own usage reports."""
