"""What leaves statistics over HTTP: figures, and suggestions (texts of needs, no names)."""
from __future__ import annotations

from typing import Any

from functions.stats.model import Suggestion


def suggestion_view(suggestion: Suggestion) -> dict[str, Any]:
    return {"id": suggestion.id, "text": suggestion.text, "category": suggestion.category,
            "count": suggestion.count, "window_days": suggestion.window_days, "status": suggestion.status,
            "accepted_as": suggestion.accepted_as}
