"""Ledger HTTP entrypoints (being built)."""
from chalice import Blueprint

ledger_bp = Blueprint(__name__)
