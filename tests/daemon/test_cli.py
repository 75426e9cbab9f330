"""crm-sync commands against the fake Odoo and the test double: init, once, status,
check, auth (one-shot redirect on 127.0.0.1), sandbox."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sync_daemon.cli import main
from sync_daemon.config import load_settings
from sync_daemon.kernel.models import Address, Customer
from sync_daemon.kernel.protocol import ConnectorContext, HealthReport, TokenSet
from sync_daemon.testing.double import DoubleLedger
from sync_daemon.testing.fake_odoo import FakeOdoo


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OAuthDouble:
    """A connector with an authorization-code flow whose 'browser' is a thread."""

    kind = "oauth"
    exchanged: ClassVar[list[str]] = []

    def __init__(self, context: ConnectorContext) -> None:
        self.context = context

    def check(self) -> HealthReport:
        tokens = self.context.tokens.load("oauth")
        return HealthReport("valid" if tokens else "missing", "double")

    def close(self) -> None:
        pass

    def authorization_url(self, *, redirect_uri: str, state: str) -> str:
        def browser() -> None:
            time.sleep(0.2)
            urllib.request.urlopen(
                f"{redirect_uri}?code=CODE-1&state={state}", timeout=5
            )

        threading.Thread(target=browser, daemon=True).start()
        return f"https://login.example.invalid/auth?state={state}"

    def exchange_code(self, *, code: str, redirect_uri: str) -> TokenSet:
        self.exchanged.append(code)
        now = datetime.now(UTC)
        tokens = TokenSet(
            access_token="AT",
            refresh_token="RT",
            issued_at=now,
            expires_at=now + timedelta(minutes=10),
        )
        with self.context.tokens.lock("oauth"):
            self.context.tokens.save("oauth", tokens)
        return tokens


def oauth_factory(context: ConnectorContext) -> OAuthDouble:
    return OAuthDouble(context)


@pytest.fixture
def setup(fake_odoo: FakeOdoo, tmp_path: Path) -> dict[str, Any]:
    backend = fake_odoo.add_backend(name="Ledger", kind="exact")
    oauth = fake_odoo.add_backend(name="Cloud", kind="oauth")
    port = _free_port()
    config = tmp_path / "crm-sync.toml"
    ledger = tmp_path / "ledger.sqlite3"
    assert main(["init", str(config)]) == 0
    text = config.read_text()
    text = text.replace('url = "http://127.0.0.1:8069"', f'url = "{fake_odoo.url}"')
    text = text.replace('database = "crm"', f'database = "{fake_odoo.database}"')
    text = text.replace('login = "sync-bot@example.com"', 'login = "sync-bot"')
    text = text.replace(
        'state_dir = ".crm-sync"', f'state_dir = "{tmp_path / "state"}"'
    )
    text += (
        f'\n[backends.{backend}]\nfactory = "sync_daemon.testing.double:create"\n'
        f'ledger = "{ledger}"\n'
        f'\n[backends.{oauth}]\nfactory = "tests.daemon.test_cli:oauth_factory"\n'
        f'redirect_uri = "http://127.0.0.1:{port}/callback"\n'
    )
    config.write_text(text)
    return {
        "config": config,
        "backend": backend,
        "oauth": oauth,
        "ledger": ledger,
        "fake": fake_odoo,
        "tmp": tmp_path,
    }


def test_init_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    assert main(["init", str(path)]) == 0
    assert (path.stat().st_mode & 0o777) == 0o600
    assert "[odoo]" in path.read_text()
    assert main(["init", str(path)]) == 1


def test_environment_overrides_file(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_SYNC_ODOO__API_KEY", "secret")
    monkeypatch.setenv("CRM_SYNC_LOG_FORMAT", "json")
    settings = load_settings(setup["config"])
    assert settings.odoo.api_key.get_secret_value() == "secret"
    assert settings.log_format == "json"
    assert settings.backend_settings(setup["backend"])["ledger"] == str(setup["ledger"])


def test_bad_config_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[odoo]\nurl = "ftp://x"\ndatabase = "d"\nlogin = "l"\napi_key = "k"\n'
    )
    assert main(["-c", str(config), "once"]) == 2
    assert "odoo.url" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("odoo_section", "expected"),
    [
        # a misspelt key must not fall back to its default silently
        ("timout = 1\n", "odoo.timout: Extra inputs are not permitted"),
        ('url = "http://bot:Hush-789@127.0.0.1:1"\n', "must not carry a user"),
        ('url = "http://"\n', "must start with http://"),
    ],
)
def test_odoo_section_refuses_typos_and_credentials_in_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], odoo_section: str, expected: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[odoo]\ndatabase = "d"\nlogin = "l"\napi_key = "k"\n' + odoo_section
    )
    for command in ("check", "status", "once"):
        assert main(["-c", str(config), command]) == 2
        err = capsys.readouterr().err
        assert expected in err
        assert "Hush-789" not in err


def test_missing_config_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRM_SYNC_CONFIG", raising=False)
    assert main(["status"]) == 2
    assert "-c FILE" in capsys.readouterr().err
    assert main(["-c", str(tmp_path), "status"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_once_status_check_and_auth(
    setup: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRM_SYNC_ODOO__API_KEY", "secret")
    ledger = DoubleLedger(setup["ledger"])
    for n in range(30):
        ledger.put_customer(
            Customer(
                external_id=f"E{n}",
                name=f"Client {n}",
                address=Address(country_code="BE"),
            )
        )
    config = str(setup["config"])
    assert main(["-c", config, "once", "--backend", str(setup["backend"])]) == 0
    out = capsys.readouterr().out
    assert "success" in out and "created 30" in out
    fake: FakeOdoo = setup["fake"]
    assert (
        len([p for p in fake.records("res.partner") if p["name"].startswith("Client")])
        == 30
    )

    assert main(["-c", config, "status"]) == 0
    out = capsys.readouterr().out
    assert "Ledger" in out and "success" in out

    assert main(["-c", config, "check"]) == 1  # the OAuth backend has no tokens yet
    states = {b["id"]: b["credentials_state"] for b in fake.records("crm.sync.backend")}
    assert states == {setup["backend"]: "valid", setup["oauth"]: "missing"}

    OAuthDouble.exchanged.clear()
    assert (
        main(
            [
                "-c",
                config,
                "auth",
                str(setup["oauth"]),
                "--no-browser",
                "--timeout",
                "10",
            ]
        )
        == 0
    )
    assert OAuthDouble.exchanged == ["CODE-1"]
    assert fake.data["crm.sync.backend"][setup["oauth"]]["credentials_state"] == "valid"
    assert main(["-c", config, "check"]) == 0

    assert main(["-c", config, "once", "--backend", "999"]) == 2
    assert "999" in capsys.readouterr().err


def test_auth_refuses_a_connector_without_oauth(
    setup: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CRM_SYNC_ODOO__API_KEY", "secret")
    assert (
        main(
            ["-c", str(setup["config"]), "auth", str(setup["backend"]), "--no-browser"]
        )
        == 2
    )
    assert "no authorization-code flow" in capsys.readouterr().err


def test_sandbox_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "no-such-thing"]) == 2
    assert "no sandbox named" in capsys.readouterr().err


def test_unusable_paths_are_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["init", str(blocker / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crm-sync init: ") and "Traceback" not in err
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{blocker}"\n[odoo]\ndatabase = "d"\nlogin = "l"\n'
        'api_key = "k"\nurl = "http://127.0.0.1:1"\n'
    )
    assert main(["-c", str(config), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crm-sync status: ") and "Traceback" not in err
    assert str(blocker) in err


@pytest.mark.parametrize(
    "command",
    [
        ["init"],
        ["check"],
        ["run"],
        ["once"],
        ["status"],
        ["auth"],
        ["reconcile"],
        ["sandbox"],
        ["peppol", "validate"],
    ],
)
def test_every_command_has_help(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: crm-sync " + " ".join(command))
    assert len(out.splitlines()) > 3  # more than a bare usage line
