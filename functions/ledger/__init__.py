"""Ledger: accounts, transfers, holds, settlement, statements, reconciliation (TigerBeetle-style)."""
