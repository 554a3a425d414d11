"""Requests HTTP entrypoints (being built)."""
from chalice import Blueprint

requests_bp = Blueprint(__name__)
