"""Identity HTTP entrypoints (being built)."""
from chalice import Blueprint

identity_bp = Blueprint(__name__)
