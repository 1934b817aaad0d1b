"""Channel settings, secrets kept through masked round trips, signatures, backoff, payload text."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mainspring.alerts.channels import email_text, signature, with_console_link
from mainspring.alerts.config import ChannelKind, parse_config, parse_params
from mainspring.alerts.delivery import DeliveryPolicy
from mainspring.alerts.store import _keep_secrets, mask_url, masked_config
from mainspring.errors import ValidationError
from mainspring.observability.metrics import histogram


def test_email_config_is_stored_with_a_version_and_listed_masked() -> None:
    stored = parse_config(
        ChannelKind.EMAIL,
        {"host": "smtp.x", "from_addr": "a@x", "to": ["b@x"], "username": "u", "password": "pw"},
    )
    assert stored["v"] == 1
    assert stored["security"] == "starttls"
    assert masked_config(stored)["password"] == "***"
    assert masked_config(stored)["username"] == "u"


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        (
            ChannelKind.EMAIL,
            {"host": "h", "from_addr": "nobody", "to": ["b@x"]},
            "config.from_addr",
        ),
        (ChannelKind.EMAIL, {"host": "h", "from_addr": "a@x", "to": []}, "config.to"),
        (ChannelKind.COMMAND, {"argv": []}, "config.argv"),
        (
            ChannelKind.WEBHOOK,
            {"url": "http://h", "headers": {"bad name": "x"}},
            "config.headers.bad name",
        ),
    ],
)
def test_bad_config_names_its_field(kind: ChannelKind, config: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_config(kind, config)
    assert err.value.field == field


def test_bad_rule_param_names_its_field() -> None:
    with pytest.raises(ValidationError) as err:
        parse_params({"max_length": -1})
    assert err.value.field == "params.max_length"


def test_masked_secrets_sent_back_keep_the_stored_ones() -> None:
    old = {"url": "http://a", "secret": "s", "headers": {"Authorization": "Bearer t", "X-A": "1"}}
    new = {"url": "http://b", "secret": "***", "headers": {"Authorization": "***", "X-A": "2"}}
    assert _keep_secrets(new, old) == {
        "url": "http://b",
        "secret": "s",
        "headers": {"Authorization": "Bearer t", "X-A": "2"},
    }


def test_a_new_secret_replaces_the_old_one() -> None:
    assert _keep_secrets({"secret": "new"}, {"secret": "old"}) == {"secret": "new"}


def test_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"a": 1}'
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_backoff_doubles_and_is_capped() -> None:
    policy = DeliveryPolicy(base_backoff_s=5, max_backoff_s=30)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_console_link_becomes_absolute_only_when_the_channel_knows_the_console() -> None:
    payload = {"link": "/runs/r1"}
    assert with_console_link(payload, None) == payload
    assert with_console_link(payload, "https://ms.example/")["url"] == "https://ms.example/runs/r1"


def test_email_text_has_link_error_and_log_tail() -> None:
    text = email_text(
        {"subject": "s", "url": "http://x/runs/1", "error": "E: m", "log_tail": "last line"}
    )
    assert "Link: http://x/runs/1" in text
    assert "Error: E: m" in text
    assert text.rstrip().endswith("last line")


def test_histogram_counts_are_cumulative() -> None:
    family = histogram("h", "doc", [0.2, 0.7, 3.0], (0.5, 1.0))
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("h_bucket", "0.5")] == 1
    assert samples[("h_bucket", "1.0")] == 2
    assert samples[("h_bucket", "+Inf")] == 3
    assert samples[("h_sum", None)] == pytest.approx(3.9)


def test_webhook_url_tokens_are_masked_and_kept_on_round_trip() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=abc123&x=1"
    masked = masked_config({"url": url})["url"]
    assert "abc123" not in masked
    assert masked == "https://oapi.dingtalk.com/robot/send?access_token=%2A%2A%2A&x=%2A%2A%2A"
    assert _keep_secrets({"url": masked, "timeout_s": 3}, {"url": url}) == {
        "url": url,
        "timeout_s": 3,
    }
    assert mask_url("http://u:pw@h/p") == "http://u:***@h/p"
