"""Statistics fed by domain events (the ``stats`` queue): per-day, per-category aggregates,
active people, top volunteers, ledger health, open data with k-anonymous groups, and the
high-frequency needs suggested to admins as new credit items."""
