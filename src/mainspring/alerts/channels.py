"""Sending one alert through one channel: a webhook, an e-mail over SMTP, or a command.

Every sender either returns (delivered) or raises ``DeliveryError`` with one line that says
what went wrong; the caller records it and retries later. Each has a timeout, because senders
run in the recorder's maintenance thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from typing import Any

import httpx

from mainspring.alerts.config import CommandConfig, EmailConfig, WebhookConfig, load_config
from mainspring.errors import MainspringError

SIGNATURE_HEADER = "X-Mainspring-Signature"
USER_AGENT = "mainspring-alerts/1"


class DeliveryError(MainspringError):
    """A channel did not take the alert; the message says why."""


def send(kind: str, config: dict[str, Any], payload: dict[str, Any]) -> None:
    """Deliver ``payload`` through a channel of ``kind`` configured by ``config``."""
    settings = load_config(kind, config)
    if isinstance(settings, WebhookConfig):
        send_webhook(settings, payload)
    elif isinstance(settings, EmailConfig):
        send_email(settings, payload)
    elif isinstance(settings, CommandConfig):
        run_command(settings, payload)


def with_console_link(payload: dict[str, Any], console_url: Any) -> dict[str, Any]:
    """The payload with an absolute ``url`` when the channel knows the console's address."""
    path = payload.get("link")
    if console_url is None or not path:
        return payload
    return {**payload, "url": str(console_url).rstrip("/") + str(path)}


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the receiver recomputes it over the raw body with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(cfg: WebhookConfig, payload: dict[str, Any]) -> None:
    body = json.dumps(with_console_link(payload, cfg.console_url), default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **cfg.headers}
    if cfg.secret:
        headers[SIGNATURE_HEADER] = signature(cfg.secret, body)
    try:
        response = httpx.post(str(cfg.url), content=body, headers=headers, timeout=cfg.timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook {cfg.url.host}: {exc or type(exc).__name__}") from None
    if not response.is_success:
        raise DeliveryError(f"webhook answered HTTP {response.status_code}")


def email_text(payload: dict[str, Any]) -> str:
    """The plain-text body: subject, link, error and log tail."""
    lines = [str(payload.get("subject", "")), ""]
    for label, key in (("Link", "url"), ("Console path", "link"), ("Error", "error")):
        if payload.get(key):
            lines.append(f"{label}: {payload[key]}")
    if payload.get("suppressed"):
        lines.append(f"Repeats not sent separately: {payload['suppressed']}")
    if payload.get("log_tail"):
        lines += ["", "Log tail:", str(payload["log_tail"])]
    return "\n".join(lines) + "\n"


def send_email(cfg: EmailConfig, payload: dict[str, Any]) -> None:
    full = with_console_link(payload, cfg.console_url)
    message = EmailMessage()
    message["Subject"] = f"[mainspring] {payload.get('subject', 'alert')}"[:250]
    message["From"] = cfg.from_addr
    message["To"] = ", ".join(cfg.to)
    message.set_content(email_text(full))
    try:
        smtp: smtplib.SMTP
        if cfg.security == "ssl":
            context = ssl.create_default_context()
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"smtp {cfg.host}:{cfg.port}: {exc or type(exc).__name__}") from None


def run_command(cfg: CommandConfig, payload: dict[str, Any]) -> None:
    body = json.dumps(with_console_link(payload, cfg.console_url), default=str).encode()
    try:
        done = subprocess.run(
            cfg.argv, input=body, capture_output=True, timeout=cfg.timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"command timed out after {cfg.timeout_s} s") from None
    except OSError as exc:
        raise DeliveryError(f"command could not start: {exc}") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise DeliveryError(f"command exited with {done.returncode}: {tail[0][:300]}")
