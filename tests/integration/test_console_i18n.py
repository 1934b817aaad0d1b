"""The console in English and 简体中文: the language from the user's setting or the browser,
the switcher, the catalog kept complete, and times in the user's own zone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from sqlalchemy import select

from mainspring.console import i18n
from mainspring.context import AppContext
from mainspring.core.states import Role
from mainspring.db.models import AuditEntry, User
from tests.integration.test_console_jobs import Console, add_job, csrf_of
from tests.integration.test_console_jobs import console as console  # the fixture

CONSOLE = Path(i18n.__file__).parent
PO_FILE = CONSOLE / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def set_user(ctx: AppContext, username: str, **values: str | None) -> None:
    with ctx.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        for key, value in values.items():
            setattr(user, key, value)


def test_login_page_follows_the_browser_language(console: Console) -> None:
    client = console(None)
    chinese = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert '<html lang="zh-CN">' in chinese
    assert "<h1>登录</h1>" in chinese
    assert "用户名" in chinese
    english = client.get("/login", headers={"Accept-Language": "fr-FR,en;q=0.5"}).text
    assert '<html lang="en">' in english
    assert "<h1>Log in</h1>" in english


def test_the_users_setting_wins_over_the_browser(ctx: AppContext, console: Console) -> None:
    job_id = add_job(ctx)
    set_user(ctx, "viewer", language="zh-CN")
    client = console(Role.VIEWER)
    page = client.get(f"/jobs/{job_id}", headers={"Accept-Language": "en-US"}).text
    assert '<html lang="zh-CN">' in page
    assert "<h2>配置</h2>" in page
    assert "最近运行" in page
    assert ">作业</a>" in page  # the navigation
    jobs = client.get("/jobs").text
    assert "已启用" in jobs
    assert "时间均为 Asia/Shanghai (UTC+08:00)" in jobs


def test_the_switcher_saves_the_language_and_goes_back(ctx: AppContext, console: Console) -> None:
    client = console(Role.OPERATOR)
    token = csrf_of(client.get("/runs?state=SUCCESS").text)
    form = {"language": "zh-CN", "next": "/runs?state=SUCCESS", "csrf_token": token}
    response = client.post("/preferences/language", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs?state=SUCCESS"
    assert "<h1>运行</h1>" in client.get("/runs").text
    with ctx.session() as s:
        assert s.scalar(select(User.language).where(User.username == "operator")) == "zh-CN"
        entry = s.scalars(select(AuditEntry).where(AuditEntry.object_type == "user")).one()
        assert entry.changes == {
            "v": 1,
            "before": {"language": None},
            "after": {"language": "zh-CN"},
        }
    form = {"language": "en", "next": "https://evil.example/", "csrf_token": token}
    back = client.post("/preferences/language", data=form, follow_redirects=False)
    assert back.headers["location"] == "/dashboard"
    assert "<h1>Runs</h1>" in client.get("/runs").text


def test_the_switcher_needs_a_token_and_a_known_language(console: Console) -> None:
    client = console(Role.VIEWER)
    assert client.post("/preferences/language", data={"language": "zh-CN"}).status_code == 403
    token = csrf_of(client.get("/jobs").text)
    bad = client.post("/preferences/language", data={"language": "xx-YY", "csrf_token": token})
    assert bad.status_code == 422
    anonymous = console(None).post("/preferences/language", follow_redirects=False)
    assert anonymous.headers["location"].startswith("/login")


def test_times_are_shown_in_the_users_zone_with_its_name(ctx: AppContext, console: Console) -> None:
    add_job(ctx, trigger={"kind": "once", "at": "2031-07-01T00:00:00Z"})
    set_user(ctx, "viewer", timezone="America/New_York")
    page = console(Role.VIEWER).get("/jobs").text
    assert "2031-06-30 20:00:00" in page  # EDT, UTC-4
    assert re.search(r"Times in America/New_York \(UTC-0[45]:00\)", page)


def test_errors_and_messages_are_translated(ctx: AppContext, console: Console) -> None:
    set_user(ctx, "viewer", language="zh-CN")
    refused = console(Role.VIEWER).get("/jobs/new")
    assert refused.status_code == 403
    assert "此操作需要 operator 角色" in refused.text
    missing = console(Role.VIEWER).get("/runs?job=nope").text
    assert "没有这个名称的作业" in missing


@pytest.mark.parametrize("language", ["zh-CN", "zh", "zh-Hans-CN", "zh_CN", "zh-SG"])
def test_simplified_chinese_tags_match(language: str) -> None:
    assert i18n.negotiate(None, language) == "zh_CN"


@pytest.mark.parametrize("header", ["zh-TW", "zh-Hant", "de, fr;q=0.9", "", "zh;q=0, en;q=0.1"])
def test_other_languages_fall_back_to_english(header: str) -> None:
    assert i18n.negotiate(None, header) == "en"


def test_catalog_translates_every_message_of_the_console() -> None:
    """Every string marked in the templates and code (what ``pybabel extract`` finds with
    ``babel.cfg``) has a Chinese translation with the same placeholders."""
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    options = {
        "**/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}
    }
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(CONSOLE),
        method_map,
        options_map=options,
        keywords={"_": None, "gettext": None, "N_": None},
    ):
        found.add(message if isinstance(message, str) else message[0])
    with PO_FILE.open("rb") as source:
        catalog = read_po(source, locale="zh_CN")
    assert len(found) > 200
    missing = sorted(m for m in found if not catalog.get(m) or not catalog.get(m).string)
    assert missing == [], "run pybabel extract/update and translate these"
    for message in found:
        translated = catalog.get(message).string
        assert sorted(PLACEHOLDER.findall(message)) == sorted(PLACEHOLDER.findall(translated)), (
            message
        )
    stale = sorted(m.id for m in catalog if m.id and m.id not in found and not m.obsolete)
    assert stale == [], "these are no longer used: run pybabel update"


def test_the_catalog_compiles_from_the_po_file() -> None:
    i18n.translations.cache_clear()
    assert i18n.Lang("zh_CN").gettext("Jobs") == "作业"
    assert i18n.Lang("en").gettext("Jobs") == "Jobs"
