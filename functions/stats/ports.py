"""What the statistics use cases need from outside: their aggregate store, buildings and names
(identity), the ledger's liability per asset, and the catalogue that accepted suggestions join."""
from __future__ import annotations

from datetime import date
from typing import Iterable, Mapping, Protocol

from functions.stats.model import BuildingMonth, Contribution, DayItem, DayPeople, NeedText, Suggestion


class StatsStore(Protocol):
    def apply(self, contribution: Contribution) -> bool:
        """Add ``contribution`` to its (day, category) item (and its need text to the week's
        texts), each item refusing an event id it holds already; False (nothing added) when
        every item had the event before."""

    def days(self, start: date, end: date) -> list[DayItem]:
        """The (day, category) items of the days: one Query (paged), never per order."""

    def earlier_people(self, start: date, end: date) -> list[DayPeople]:
        """Per-day people written by the former layout (before issue 14), read with the days."""

    def earlier_buildings(self, month: str) -> list[BuildingMonth]:
        """Per-month buildings written by the former layout (before issue 14)."""

    def need_texts(self, weeks: Iterable[str]) -> list[NeedText]: ...

    def save_suggestion(self, suggestion: Suggestion) -> None:
        """Create or refresh an open suggestion (its count); an accepted one is left as it is."""

    def suggestions(self) -> list[Suggestion]: ...

    def get_suggestion(self, suggestion_id: str) -> Suggestion | None: ...

    def mark_accepted(self, suggestion_id: str, accepted_as: str) -> bool:
        """Open → accepted (False if it was not open)."""


class Places(Protocol):
    def building_of(self, household_id: str) -> str | None: ...


class Names(Protocol):
    def names_of(self, resident_ids: Iterable[str]) -> Mapping[str, str]: ...


class Liabilities(Protocol):
    def outstanding(self) -> Mapping[str, int]:
        """asset → minutes the community owes its holders (minus what issuance has issued)."""


class CreditItems(Protocol):
    def make_credit_item(self, name: str, source_category: str, actor: str) -> str:
        """Make the need a credit-eligible category; returns its id."""
