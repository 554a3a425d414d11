"""DynamoDB adapters of risk: day counters, the settlements of each pair, flags.

- ``risk-counters``     ``vol#<resident>#<day>`` (credited minutes, services) and
                        ``pair#<hh+hh>#<day>`` (services). Updated only inside a settlement's
                        ``TransactWriteItems`` with a conditional ``ADD``: the condition is the
                        limit, so concurrent settlements cannot pass it together. TTL 3 days.
- ``risk-settlements``  pair + ``<settled UTC>#<request>``: what the flags look back over (TTL
                        90 days); one Query per settlement event.
- ``risk-flags``        flag id → a flag; ``state#<kind>#<pair>`` → the pair's open flag of that
                        kind (``current``) and how far an admin reviewed it (``reviewed``). Index
                        ``by-status`` (status + created key) lists open flags newest first.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from functions.adapters.dynamo import (checked_cursor, condition_failed, dt, epoch, index_meta, iso, make_meta,
                                       new_transaction, table)
from functions.core import clock
from functions.core.errors import Conflict, TimebankError
from functions.core.ids import derived_id
from functions.risk.model import (COUNTER_RETENTION, DAILY_MINUTES, DAILY_SERVICES, OPEN, PAIR_DAILY, RESOLVED,
                                  Counter, Finding, Flag, RiskLimits, Settlement, limit_exceeded)

SETTLEMENT_RETENTION = timedelta(days=90)
_RETRIES = 4


@table
class RiskCounterItem(Model):
    Meta = make_meta("risk-counters", ttl_attribute="expires_at")
    counter = UnicodeAttribute(hash_key=True)
    minutes = NumberAttribute(null=True)
    services = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)


def _expiry() -> int:
    return epoch(clock.now() + COUNTER_RETENTION)


class _CounterWrite:
    """A conditional ADD on a day counter, as a write of the settlement's transaction."""

    def __init__(self, key: str, minutes: int, limits: dict[str, int]):
        self.key, self.minutes, self.limits = key, minutes, limits

    def add_to(self, transaction: Any) -> None:
        actions = [RiskCounterItem.services.add(1), RiskCounterItem.expires_at.set(_expiry())]
        condition = None
        if self.minutes:
            actions.append(RiskCounterItem.minutes.add(self.minutes))
        for name, attribute, step in ((DAILY_MINUTES, RiskCounterItem.minutes, self.minutes),
                                      (DAILY_SERVICES, RiskCounterItem.services, 1),
                                      (PAIR_DAILY, RiskCounterItem.services, 1)):
            limit = self.limits.get(name)
            if not limit:
                continue
            within = attribute.does_not_exist() | (attribute <= limit - step)
            condition = within if condition is None else condition & within
        transaction.update(RiskCounterItem(self.key), actions=actions, condition=condition)

    def refusal(self) -> TimebankError:
        """Which limit the failed condition kept (read after the refusal)."""
        current = DynamoCounterStore().get(self.key)
        for name, used, step in ((DAILY_MINUTES, current.minutes, self.minutes),
                                 (DAILY_SERVICES, current.services, 1), (PAIR_DAILY, current.services, 1)):
            limit = self.limits.get(name)
            if limit and used + step > limit:
                return limit_exceeded(name, limit, used)
        return Conflict("请稍后重试", {"reason": "a risk counter changed concurrently"})


class DynamoCounterStore:
    def volunteer_day(self, key: str, minutes: int, limits: RiskLimits) -> _CounterWrite:
        return _CounterWrite(key, minutes, {DAILY_MINUTES: limits.daily_minutes,
                                            DAILY_SERVICES: limits.daily_services})

    def pair_day(self, key: str, limits: RiskLimits) -> _CounterWrite:
        return _CounterWrite(key, 0, {PAIR_DAILY: limits.pair_daily})

    def get(self, key: str) -> Counter:
        try:
            item = RiskCounterItem.get(key, consistent_read=True)
        except DoesNotExist:
            return Counter(key)
        return Counter(key, int(item.minutes or 0), int(item.services or 0))


# --- settlements and flags -------------------------------------------------------------------------

@table
class RiskSettlementItem(Model):
    Meta = make_meta("risk-settlements", ttl_attribute="expires_at")
    pair = UnicodeAttribute(hash_key=True)
    sort_key = UnicodeAttribute(range_key=True)
    request_id = UnicodeAttribute()
    settled_at = UnicodeAttribute()
    volunteer_household_id = UnicodeAttribute()
    requester_household_id = UnicodeAttribute()
    volunteer_id = UnicodeAttribute()
    amount = NumberAttribute()
    settlement_transfer_id = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()


class RiskFlagByStatus(GlobalSecondaryIndex):
    Meta = index_meta("by-status")
    status = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


@table
class RiskFlagItem(Model):
    Meta = make_meta("risk-flags")
    flag_id = UnicodeAttribute(hash_key=True)
    # flags
    kind = UnicodeAttribute(null=True)
    pair = UnicodeAttribute(null=True)
    request_ids = UnicodeSetAttribute(null=True)
    window_days = NumberAttribute(null=True)
    window_hours = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    created_key = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    outcome = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    resolved_by = UnicodeAttribute(null=True)
    resolved_at = UnicodeAttribute(null=True)
    through = UnicodeAttribute(null=True)
    reversal_ids = ListAttribute(of=UnicodeAttribute, null=True)
    # state#<kind>#<pair>
    current = UnicodeAttribute(null=True)
    reviewed = UnicodeAttribute(null=True)

    by_status = RiskFlagByStatus()


def _settlement(item: RiskSettlementItem) -> Settlement:
    return Settlement(pair=item.pair, request_id=item.request_id, settled_at=clock.parse_iso(item.settled_at),
                      volunteer_household_id=item.volunteer_household_id,
                      requester_household_id=item.requester_household_id, volunteer_id=item.volunteer_id,
                      amount=int(item.amount), settlement_transfer_id=item.settlement_transfer_id)


def _flag(item: RiskFlagItem) -> Flag:
    ids = tuple(sorted(item.request_ids or ()))
    return Flag(id=item.flag_id, kind=item.kind, pair=item.pair, count=len(ids), request_ids=ids,
                window_days=int(item.window_days or 0), window_hours=int(item.window_hours or 0),
                status=item.status, created_at=clock.parse_iso(item.created_at),
                updated_at=clock.parse_iso(item.updated_at), through=item.through or "", outcome=item.outcome,
                reason=item.reason, resolved_by=item.resolved_by, resolved_at=dt(item.resolved_at),
                reversal_ids=tuple(item.reversal_ids or ()))


def _state_key(kind: str, pair: str) -> str:
    return f"state#{kind}#{pair}"


def flag_id_for(finding: Finding) -> str:
    """Derived from what raised it: a redelivered settlement event finds the same flag."""
    return derived_id("flag", finding.kind, finding.pair, finding.request_ids[-1])


class DynamoFlagStore:
    def record(self, settlement: Settlement) -> None:
        item = RiskSettlementItem(
            settlement.pair, settlement.sort_key, request_id=settlement.request_id,
            settled_at=clock.isoformat(settlement.settled_at), volunteer_household_id=settlement.volunteer_household_id,
            requester_household_id=settlement.requester_household_id, volunteer_id=settlement.volunteer_id,
            amount=settlement.amount, settlement_transfer_id=settlement.settlement_transfer_id,
            expires_at=epoch(settlement.settled_at + SETTLEMENT_RETENTION))
        try:
            item.save(condition=RiskSettlementItem.pair.does_not_exist())
        except PutError as error:
            if not condition_failed(error):
                raise  # exists: a redelivery (the same content)

    def recent(self, pair: str, since: datetime) -> list[Settlement]:
        start = f"{since.astimezone(timezone.utc):%Y%m%dT%H%M%S}"
        return [_settlement(i) for i in RiskSettlementItem.query(pair, RiskSettlementItem.sort_key >= start,
                                                                  consistent_read=True)]

    def reviewed_through(self, pair: str) -> dict[str, str]:
        from functions.risk.model import RAPID_CYCLE, REPEATED_PAIR

        keys = [_state_key(kind, pair) for kind in (REPEATED_PAIR, RAPID_CYCLE)]
        found = {i.flag_id: i for i in RiskFlagItem.batch_get(keys, consistent_read=True)}
        return {kind: found[key].reviewed for kind, key in zip((REPEATED_PAIR, RAPID_CYCLE), keys)
                if key in found and found[key].reviewed}

    def raise_or_update(self, finding: Finding, at: datetime) -> Flag:
        new_id = flag_id_for(finding)
        state_key = _state_key(finding.kind, finding.pair)
        for _ in range(_RETRIES):
            state = self._item(state_key)
            current = state.current if state is not None else None
            if current:
                try:
                    RiskFlagItem(current).update(actions=[RiskFlagItem.request_ids.add(set(finding.request_ids)),
                                                          RiskFlagItem.updated_at.set(iso(at))],
                                                 condition=RiskFlagItem.status == OPEN)
                    return self._flag(current)
                except UpdateError as error:
                    if condition_failed(error):
                        continue  # resolved meanwhile: the next round raises a new one
                    raise
            existing = self._item(new_id)
            if existing is not None:
                return _flag(existing)  # raised by this very settlement before (a redelivery)
            created_at = iso(at)
            try:
                with new_transaction() as transaction:
                    transaction.save(RiskFlagItem(
                        new_id, kind=finding.kind, pair=finding.pair, request_ids=set(finding.request_ids),
                        window_days=finding.window_days, window_hours=finding.window_hours, status=OPEN,
                        created_at=created_at, created_key=f"{at.astimezone(timezone.utc):%Y%m%dT%H%M%S%f}#{new_id}",
                        updated_at=created_at), condition=RiskFlagItem.flag_id.does_not_exist())
                    transaction.update(RiskFlagItem(state_key), actions=[RiskFlagItem.current.set(new_id)],
                                       condition=RiskFlagItem.current.does_not_exist())
                return self._flag(new_id)
            except TransactWriteError:
                continue  # another consumer raised it in between: update that one
        raise Conflict("风险提示并发更新，请重试")

    def get(self, flag_id: str) -> Flag | None:
        if not flag_id or len(flag_id) > 128 or flag_id.startswith("state#"):
            return None
        item = self._item(flag_id)
        return _flag(item) if item is not None and item.kind else None

    def by_status(self, status: str, limit: int, cursor: dict | None) -> tuple[list[Flag], dict | None]:
        start = checked_cursor(cursor, ("flag_id", "status", "created_key"), fixed={"status": status})
        query = RiskFlagItem.by_status.query(status, scan_index_forward=False, limit=limit, last_evaluated_key=start)
        return [_flag(i) for i in query], query.last_evaluated_key

    def resolve(self, flag: Flag) -> bool:
        covered = set(flag.request_ids)
        through = max((s.sort_key for s in self.recent(flag.pair, datetime(2000, 1, 1, tzinfo=timezone.utc))
                       if s.request_id in covered), default="")
        try:
            with new_transaction() as transaction:
                transaction.update(RiskFlagItem(flag.id), actions=[
                    RiskFlagItem.status.set(RESOLVED), RiskFlagItem.outcome.set(flag.outcome),
                    RiskFlagItem.reason.set(flag.reason), RiskFlagItem.resolved_by.set(flag.resolved_by),
                    RiskFlagItem.resolved_at.set(iso(flag.resolved_at)), RiskFlagItem.through.set(through),
                    RiskFlagItem.reversal_ids.set(list(flag.reversal_ids)),
                    RiskFlagItem.updated_at.set(iso(flag.resolved_at))], condition=RiskFlagItem.status == OPEN)
                transaction.update(RiskFlagItem(_state_key(flag.kind, flag.pair)), actions=[
                    RiskFlagItem.current.remove(), RiskFlagItem.reviewed.set(through)],
                    condition=RiskFlagItem.current == flag.id)
        except TransactWriteError:
            return False
        return True

    @staticmethod
    def _item(flag_id: str) -> RiskFlagItem | None:
        try:
            return RiskFlagItem.get(flag_id, consistent_read=True)
        except DoesNotExist:
            return None

    def _flag(self, flag_id: str) -> Flag:
        item = self._item(flag_id)
        assert item is not None, "a flag just written is readable (consistent read)"
        return _flag(item)
