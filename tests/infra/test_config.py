"""Community files: the shipped ones load, and every bad value is reported by name."""
from __future__ import annotations

import json

import copy
import tomllib

import pytest

from infra.config import COMMUNITIES_DIR, ConfigError, community_ids, load_community, parse_community

VALID = {
    "id": "lakeside",
    "display_name": "湖畔社区",
    "region": "cn-northwest-1",
    "admin_openids": ["oAdmin0000000000000000000001"],
    "starting_credits": 120,
    "evidence_retention_days": 90,
    "reminder_lead_minutes": 30,
    "insurance": {"insurer": "某保险公司", "policy_number": "POL-2026-01"},
    "tariffs": {"tutoring": {"multiplier": 1.5, "credit_mode": "per_hour"}},
}


def test_shipped_communities_load():
    assert set(community_ids()) >= {"demo", "fuyuan"}
    for community in community_ids():
        config = load_community(community)
        assert config.id == community
        assert config.admin_openids and config.insurer and config.insurance_policy_number


def test_a_valid_file_gives_the_environment_of_the_functions():
    config = parse_community(VALID)
    env = config.environment()
    assert env["TIMEBANK_COMMUNITY"] == "lakeside"
    assert env["TIMEBANK_RESOURCE_PREFIX"] == "timebank-lakeside"
    assert env["TIMEBANK_STAGE"] == "prod"
    assert env["TIMEBANK_STARTING_CREDITS"] == "120"
    assert env["TIMEBANK_EVIDENCE_RETENTION_DAYS"] == "90"
    assert env["TIMEBANK_REMINDER_LEAD_MINUTES"] == "30"
    assert env["TIMEBANK_TOKEN_SECRET_PARAMETER"] == "/timebank/lakeside/token-secret"
    assert env["TIMEBANK_TARIFF_OVERRIDES"] == '{"tutoring":{"credit_mode":"per_hour","multiplier":1.5}}'
    assert config.partition == "aws-cn"
    assert parse_community({**VALID, "region": "ap-east-1"}).partition == "aws"


def test_defaults_apply_to_optional_settings():
    minimal = {k: v for k, v in VALID.items()
               if k in ("id", "display_name", "region", "admin_openids", "insurance")}
    config = parse_community(minimal)
    assert (config.starting_credits, config.evidence_retention_days, config.reminder_lead_minutes,
            config.tariff_overrides) == (300, 180, 60, {})


def _with(path: str, value):
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


class _Absent:
    def __repr__(self) -> str:  # stable test ids (pytest-xdist compares them across workers)
        return "<absent>"


_DELETE = _Absent()

BAD_VALUES = [
    ("id", "Lakeside", "id", "lowercase"),
    ("id", "lake_side", "id", "lowercase"),
    ("id", "a" * 21, "id", "at most 20"),
    ("id", _DELETE, "id", "required"),
    ("display_name", "", "display_name", "1 to 40"),
    ("display_name", "两行\n名字", "display_name", "single line"),
    ("region", "beijing", "region", "region code"),
    ("region", "cn-north", "region", "region code"),
    ("admin_openids", [], "admin_openids", "non-empty"),
    ("admin_openids", "oAdmin0000000000000000000001", "admin_openids", "non-empty list"),
    ("admin_openids", ["bad id!"], "admin_openids", "not an openid"),
    ("admin_openids", ["oAdmin01", "oAdmin01"], "admin_openids", "twice"),
    ("starting_credits", -1, "starting_credits", "0 to 6000"),
    ("starting_credits", 1.5, "starting_credits", "integer"),
    ("starting_credits", True, "starting_credits", "integer"),
    ("evidence_retention_days", 0, "evidence_retention_days", "1 to 3650"),
    ("evidence_retention_days", "180", "evidence_retention_days", "integer"),
    ("reminder_lead_minutes", 1, "reminder_lead_minutes", "5 to 10080"),
    ("log_retention_days", 100, "log_retention_days", "retention periods"),
    ("insurance", _DELETE, "insurance", "required"),
    ("insurance", "PICC", "insurance", "must be a table"),
    ("insurance.insurer", _DELETE, "insurance.insurer", "required"),
    ("insurance.insurer", "x", "insurance.insurer", "2 to 50"),
    ("insurance.policy_number", "no spaces allowed", "insurance.policy_number", "4-40"),
    ("insurance.agent", "someone", "insurance.agent", "unknown setting"),
    ("alarms.emails", ["not-an-email"], "alarms.emails", "e-mail"),
    ("deploy.artifact_bucket", "Bad_Bucket", "deploy.artifact_bucket", "bucket name"),
    ("starting_credit", 300, "starting_credit", "unknown setting"),
    ("tariffs.massage", {"multiplier": 1}, "tariffs.massage", "unknown category"),
    ("tariffs.tutoring", {"credit_mode": "per_minute"}, "tariffs.tutoring.credit_mode", "per_hour"),
    ("tariffs.tutoring", {"multiplier": -1}, "tariffs.tutoring.multiplier", "须在 0 到 10 之间"),
    ("tariffs.tutoring", {"multiplier": 1.234}, "tariffs.tutoring.multiplier", "最多 2 位小数"),
    ("tariffs.tutoring", {"max_minutes": 0}, "tariffs.tutoring.max_minutes", "不能小于 1"),
    ("tariffs.tutoring", {"credit_eligible": "yes"}, "tariffs.tutoring.credit_eligible", "须为 true 或 false"),
    ("tariffs.tutoring", {"rounding": [{"max_minutes": 30, "credit_minutes": 30}]},
     "tariffs.tutoring.rounding", "止于 60 分钟"),
    ("tariffs.tutoring", {"rounding": [{"max_minutes": 45, "credit_minutes": 30},
                                       {"max_minutes": 15, "credit_minutes": 0}]},
     "tariffs.tutoring.rounding", "递增"),
    ("tariffs.tutoring", {"name": "补课"}, "tariffs.tutoring.name", "not a tariff setting"),
    ("tariffs.tutoring", {}, "tariffs.tutoring", "table of tariff settings"),
    ("wechat.templates", "abc", "wechat.templates", "table of template name"),
    ("wechat.templates", {"promo": "PROMO-template-0001"}, "wechat.templates", "unknown template"),
    ("wechat.templates", {"match": "short"}, "wechat.templates", "not a WeChat template id"),
    ("assets", {"reputation": {"name": "声望"}}, "assets.reputation", "unknown asset"),
    ("assets", {"green": {"unit": "kg"}}, "assets.green.unit", "minute, point"),
    ("assets", {"green": {"expires_after_days": -1}}, "assets.green.expires_after_days", "0 (never)"),
    ("assets", {"green": {"convert_to": {"service": {"rate_num": 1, "rate_den": 0}}}},
     "assets.green.convert_to.service.rate_den", "1 to 1000"),
    ("assets", {"green": {"convert_to": {"green": {"rate_num": 1, "rate_den": 1}}}},
     "assets.green.convert_to.green", "another known asset"),
    ("assets", {"green": {"transferable": "no"}}, "assets.green.transferable", "true or false"),
    ("min_redeem_age", -1, "min_redeem_age", "0 to 120"),
    ("zyh.api_base", "http://zyh.example", "zyh.api_base", "https://"),
    ("zyh.timeout_minutes", 0, "zyh.timeout_minutes", "1 to 1440"),
    ("zyh.coins_per_minute", 1.5, "zyh.coins_per_minute", "integer"),
    ("zyh.secret", "x", "zyh.secret", "unknown setting"),
    ("family.household_balance_cap", -1, "family.household_balance_cap", "0 to 1000000"),
    ("family.elderly_age", "60", "family.elderly_age", "integer"),
    ("family.min_age", 12, "family.min_age", "unknown setting"),
    ("risk.daily_minutes", 2000, "risk.daily_minutes", "0 to 1440"),
    ("risk.pair_daily", 1.5, "risk.pair_daily", "integer"),
    ("risk.backdating_window_hours", 48, "risk.backdating_window_hours", "unknown setting"),
    ("risk", "strict", "risk", "must be a table"),
]


def test_family_rules_and_risk_limits_reach_the_functions_environment():
    defaults = parse_community(VALID).environment()
    assert (defaults["TIMEBANK_HOUSEHOLD_BALANCE_CAP"], defaults["TIMEBANK_PROXY_ELDERLY_AGE"],
            defaults["TIMEBANK_BACKDATING_WINDOW_HOURS"], defaults["TIMEBANK_RISK_DAILY_MINUTES"],
            defaults["TIMEBANK_RISK_DAILY_SERVICES"], defaults["TIMEBANK_RISK_PAIR_DAILY"]) == \
        ("0", "60", "48", "480", "6", "2")
    configured = parse_community({**VALID, "family": {"household_balance_cap": 1200},
                                  "risk": {"pair_daily": 0, "rapid_cycle_hours": 12}}).environment()
    assert configured["TIMEBANK_HOUSEHOLD_BALANCE_CAP"] == "1200"
    assert (configured["TIMEBANK_RISK_PAIR_DAILY"], configured["TIMEBANK_RISK_RAPID_CYCLE_HOURS"],
            configured["TIMEBANK_RISK_REPEATED_PAIR_COUNT"]) == ("0", "12", "5")
    from functions.core.settings import Settings

    assert Settings().risk_daily_minutes == 480 and Settings().household_balance_cap == 0


def test_wechat_templates_reach_the_functions_environment():
    from infra.config import load_community

    environment = load_community("fuyuan").environment()
    assert json.loads(environment["TIMEBANK_WECHAT_TEMPLATES"]) == {
        "match": "FUYUAN-match-template-0001", "reminder": "FUYUAN-reminder-template-0001"}


def test_point_kinds_minimum_age_and_zyh_reach_the_functions_environment():
    from infra.config import load_community

    demo = load_community("demo")
    environment = demo.environment()
    assets = json.loads(environment["TIMEBANK_ASSETS"])
    assert assets["volunteer"]["convert_to"] == {"service": {"rate_num": 1, "rate_den": 1}}
    assert assets["green"]["convert_to"] == {"service": {"rate_num": 1, "rate_den": 10}}
    assert (environment["TIMEBANK_MIN_REDEEM_AGE"], environment["TIMEBANK_ZYH_TIMEOUT_MINUTES"],
            environment["TIMEBANK_ZYH_COINS_PER_MINUTE"], environment["TIMEBANK_ZYH_API_BASE"]) == ("0", "15", "1", "")
    assert "TIMEBANK_ZYH_KEY_PARAMETER" not in environment   # no partner, no key to create
    partnered = parse_community({**VALID, "min_redeem_age": 14, "zyh": {"api_base": "https://open.zyh.example/v2/"}})
    environment = partnered.environment()
    assert environment["TIMEBANK_ZYH_API_BASE"] == "https://open.zyh.example/v2"
    assert environment["TIMEBANK_ZYH_KEY_PARAMETER"] == "/timebank/lakeside/zyh-key"
    assert environment["TIMEBANK_MIN_REDEEM_AGE"] == "14" and json.loads(environment["TIMEBANK_ASSETS"]) == {}


@pytest.mark.parametrize("path,value,field,fragment", BAD_VALUES,
                         ids=[f"{p}={v!r}"[:60] for p, v, _, _ in BAD_VALUES])
def test_each_bad_value_is_rejected_by_name(path, value, field, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_community(_with(path, value), source="lakeside.toml")
    assert list(caught.value.problems) == [field]
    assert fragment in caught.value.problems[field]
    assert "lakeside.toml" in str(caught.value) and field in str(caught.value)


def test_all_problems_are_reported_at_once():
    data = _with("starting_credits", -5)
    data["region"] = "moon-1"
    data["tariffs"] = {"pet": {"multiplier": 99}}
    with pytest.raises(ConfigError) as caught:
        parse_community(data)
    assert set(caught.value.problems) == {"starting_credits", "region", "tariffs.pet.multiplier"}


def test_file_name_and_id_must_agree(tmp_path):
    (tmp_path / "lakeside.toml").write_text(
        (COMMUNITIES_DIR / "demo.toml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_community("lakeside", tmp_path)
    assert "must equal the file name 'lakeside'" in caught.value.problems["id"]


def test_missing_file_and_bad_toml_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="no such community file"):
        load_community("nowhere", tmp_path)
    (tmp_path / "broken.toml").write_text('id = "broken\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_community("broken", tmp_path)


def test_shipped_files_use_only_known_categories_and_parse_as_toml():
    for community in community_ids():
        data = tomllib.loads((COMMUNITIES_DIR / f"{community}.toml").read_text(encoding="utf-8"))
        assert parse_community(data).tariff_overrides == data.get("tariffs", {})
