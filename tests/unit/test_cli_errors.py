"""Every user mistake is one ``error:`` line and a non-zero exit, never a traceback."""

import pytest

from mainspring.cli.main import main


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_unknown_option_is_one_line(capsys):
    code, _, err = run_cli(["up", "--frobnicate"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: No such option")
    assert "--frobnicate" in lines[0]
    assert "mainspring up --help" in lines[0]


def test_invalid_cron_is_one_line_and_stores_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(tmp_path))
    code, _, err = run_cli(["jobs", "add", "x", "--cron", "61 * * * *", "--task", "t.a"], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: trigger.expr: invalid cron expression")
    code, out, _ = run_cli(["jobs", "list"], capsys)
    assert code == 0
    assert out.strip().splitlines()[1:] == []


def test_misspelled_database_url_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("MAINSPRING_DATABASE_URL", "postgres-ql://nowhere/db")
    code, _, err = run_cli(["jobs", "list"], capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "database URL" in err


def test_unreachable_database_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("MAINSPRING_DATABASE_URL", "postgresql://u:secretpw@127.0.0.1:1/db")
    code, _, err = run_cli(["jobs", "list"], capsys)
    assert code == 1
    assert err.startswith("error: cannot reach database")
    assert "secretpw" not in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_data_dir_is_one_line(capsys, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.write_text("a file, not a directory")
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(locked / "sub"))
    code, _, err = run_cli(["jobs", "list"], capsys)
    assert code == 1
    assert "is not writable" in err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_broker_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAINSPRING_BROKER_URL", "redis://127.0.0.1:1/0")
    code, _, err = run_cli(["scheduler"], capsys)
    assert code == 1
    assert err.startswith("error: cannot reach broker")
    assert len(err.strip().splitlines()) == 1


def test_job_add_and_list_round_trip(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MAINSPRING_DATA_DIR", str(tmp_path))
    code, out, _ = run_cli(
        [
            "jobs",
            "add",
            "backup",
            "--cron",
            "0 2 * * *",
            "--tz",
            "Asia/Shanghai",
            "--shell",
            "echo hi",
        ],
        capsys,
    )
    assert code == 0
    assert "next: " in out
    assert "T02:00:00+08:00" in out
    code, out, _ = run_cli(["jobs", "list"], capsys)
    assert "backup" in out
    assert "0 2 * * *" in out
    code, _, err = run_cli(["jobs", "add", "backup", "--every", "5s", "--task", "t"], capsys)
    assert code == 1
    assert "already exists" in err


def test_port_in_use_is_one_line(capsys, tmp_path, monkeypatch):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("MAINSPRING_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("MAINSPRING_WEB_PORT", str(port))
        code, _, err = run_cli(["up"], capsys)
    assert code == 1
    assert err.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use; "
        "set MAINSPRING_WEB_PORT or stop the other process"
    )
