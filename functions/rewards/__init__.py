"""Rewards (礼遇): point kinds and conversion, point expiry, merchants, catalogue and vouchers, the 志愿汇 exchange."""
