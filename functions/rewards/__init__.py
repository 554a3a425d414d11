"""Rewards (礼遇): the point kinds the ledger keeps, and later merchants, vouchers and exchange."""
