"""In-memory twins of the requests domain's stores."""
from __future__ import annotations

from functions.requests.model import Category


class InMemoryCategoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, Category] = {}

    def load_all(self) -> dict[str, Category]:
        return dict(self.saved)

    def save(self, category: Category, actor: str) -> None:
        self.saved[category.id] = category
