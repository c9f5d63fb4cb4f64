"""The README's configuration table names every setting any service reads, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from castghl.common.broker_users import BrokerUsersSettings
from castghl.gateway.settings import GatewaySettings
from castghl.oauth.settings import OAuthSettings
from castghl.sender.settings import SenderSettings

# Every process's settings: the three services, and the broker's users (a compose job).
SETTINGS = (GatewaySettings, SenderSettings, OAuthSettings, BrokerUsersSettings)
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_configuration_table_lists_exactly_the_settings() -> None:
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`(?:, `([A-Z0-9_]+)`)?", table, re.M))
    names = {name for pair in documented for name in pair if name}
    actual = {field.upper() for cls in SETTINGS
              for field in cls.model_fields}
    assert sorted(actual - names) == [], "settings missing from the README"
    assert sorted(names - actual) == [], "README documents settings that do not exist"


def test_env_example_offers_every_setting() -> None:
    text = (README.parent / ".env.example").read_text()
    offered = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))
    # HOST and PORT differ per service: docker-compose.yaml sets them on each.
    actual = {field.upper() for cls in SETTINGS
              for field in cls.model_fields} - {"HOST", "PORT"}
    assert sorted(actual - offered) == [], ".env.example misses settings"
