"""Timebank: the serverless backend of a community time bank (时间银行)."""
