"""core.notify: desktop notification through plyer, email through a REAL local SMTP server.

Only plyer's backend is faked (``FakeNotification``): this machine is headless, with no notification
daemon. The SMTP server is a real aiosmtpd ``Controller`` on a free loopback port.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import plyer
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from core import notify
from ops import runner as automation
from core.settings import Settings, get_settings
from tests.net import free_port


class FakeNotification:
    """Stands in for plyer's platform backend; records every call."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def notify(self, **kwargs: Any) -> None:
        """Record the call (or fail like a broken backend)."""
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(  # pylint: disable=invalid-name  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        """Parse and keep the message."""
        del server, session
        from email import message_from_bytes, policy  # pylint: disable=import-outside-toplevel

        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture()
def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    """A real SMTP server on 127.0.0.1:<free port>."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def smtp_settings(monkeypatch: pytest.MonkeyPatch, port: int, **extra: str) -> Settings:
    """Settings (the fixture's tmp var_dir) pointing at a local SMTP port."""
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_TO", "ops@example.test, ml@example.test")
    monkeypatch.setenv("SMTP_SENDER", "churnops@example.test")
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return get_settings()


# --- desktop ---------------------------------------------------------------------------------
def test_desktop_calls_plyer_with_title_and_message(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNotification()
    monkeypatch.setattr(plyer, "notification", fake)
    monkeypatch.setenv("DISPLAY", ":99")

    assert notify.notify_desktop("churnops: pipeline code passed", "5/5 steps in 42s") is True
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["title"] == "churnops: pipeline code passed"
    assert call["message"] == "5/5 steps in 42s"
    assert call["app_name"] == "churnops"


def test_desktop_backend_failure_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNotification(error=NotImplementedError("no usable implementation"))
    monkeypatch.setattr(plyer, "notification", fake)
    monkeypatch.setenv("DISPLAY", ":99")

    with caplog.at_level(logging.WARNING, logger="core.notify"):
        assert notify.notify_desktop("title", "message") is False
    assert len(fake.calls) == 1
    assert "desktop notification failed (NotImplementedError" in caplog.text


def test_desktop_on_headless_machine_logs_a_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNotification()
    monkeypatch.setattr(plyer, "notification", fake)
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.delenv(name, raising=False)

    with caplog.at_level(logging.INFO, logger="core.notify"):
        assert notify.notify_desktop("churnops: pipeline data passed", "3/3 steps") is False
    assert fake.calls == []
    assert "skipped (headless): churnops: pipeline data passed" in caplog.text


def test_has_display_outside_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert notify.has_display() is True


# --- email -----------------------------------------------------------------------------------
def test_email_reaches_a_real_smtp_server(
    settings: Settings,
    smtp_server: tuple[Controller, Inbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    del settings
    controller, inbox = smtp_server
    conf = smtp_settings(monkeypatch, controller.port)

    assert notify.send_email("[churnops] hello", "body line\n", conf) is True
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["Subject"] == "[churnops] hello"
    assert msg["From"] == "churnops@example.test"
    assert inbox.envelopes[0][1] == ["ops@example.test", "ml@example.test"]
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "body line" in body.get_content()


def write_fake_make(tmp_path: Path) -> list[str]:
    """A stand-in for ``make``: prints numbered lines, exits 2 on the step named in FAIL_STEP."""
    script = tmp_path / "fake_make.py"
    script.write_text(
        "import os, sys\n"
        "step = sys.argv[1]\n"
        "for i in range(100):\n"
        "    print(f'{step} output line {i}')\n"
        "sys.exit(2 if step == os.environ.get('FAIL_STEP') else 0)\n",
        encoding="utf-8",
    )
    return [sys.executable, str(script)]


def test_failed_pipeline_emails_failing_step_and_log_tail(
    settings: Settings,
    smtp_server: tuple[Controller, Inbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    del settings
    controller, inbox = smtp_server
    conf = smtp_settings(monkeypatch, controller.port)
    monkeypatch.setenv("FAIL_STEP", "lint")
    monkeypatch.setattr(plyer, "notification", FakeNotification())
    monkeypatch.setenv("DISPLAY", ":99")

    run = automation.run_pipeline(
        "code", ["format-check", "lint", "typecheck"], conf, make=write_fake_make(tmp_path)
    )
    automation.notify_run(run, conf)

    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["Subject"] == "[churnops] pipeline code FAILED at lint"
    body_part = msg.get_body(preferencelist=("plain",))
    assert body_part is not None
    body = body_part.get_content()
    assert "failing step: lint (exit 2)" in body
    assert "lint output line 99" in body  # the tail of the failing step's log
    assert "lint output line 0\n" not in body  # ... only its tail
    assert "typecheck" in body and "not run" in body


def test_successful_pipeline_all_is_emailed_but_code_is_not(
    settings: Settings,
    smtp_server: tuple[Controller, Inbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    del settings
    controller, inbox = smtp_server
    conf = smtp_settings(monkeypatch, controller.port)
    make = write_fake_make(tmp_path)

    automation.notify_run(
        automation.run_pipeline("code", ["lint"], conf, make=make), conf, desktop=False
    )
    assert inbox.messages == []
    automation.notify_run(
        automation.run_pipeline("all", ["lint", "train"], conf, make=make), conf, desktop=False
    )
    assert [m["Subject"] for m in inbox.messages] == ["[churnops] pipeline all passed"]


def test_email_without_smtp_is_a_logged_line(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="core.notify"):
        assert notify.send_email("[churnops] subject", "body", settings) is False
    assert "email not sent (SMTP_HOST/SMTP_TO not configured): [churnops] subject" in caplog.text
    assert not notify.outbox_dir(settings).exists()


def test_undelivered_email_is_kept_then_sent_with_the_next_one(
    settings: Settings,
    smtp_server: tuple[Controller, Inbox],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    del settings
    controller, inbox = smtp_server
    down = smtp_settings(monkeypatch, free_port())  # nobody listens there

    with caplog.at_level(logging.WARNING, logger="core.notify"):
        assert notify.send_email("[churnops] first", "kept for later", down) is False
    kept = list(notify.outbox_dir(down).glob("*.eml"))
    assert len(kept) == 1
    assert "email not sent (ConnectionRefusedError" in caplog.text
    assert notify.flush_outbox(down) == -1  # still down: stays in the outbox
    assert len(list(notify.outbox_dir(down).glob("*.eml"))) == 1

    up = smtp_settings(monkeypatch, controller.port)
    assert notify.send_email("[churnops] second", "now it works", up) is True
    assert sorted(m["Subject"] for m in inbox.messages) == ["[churnops] first", "[churnops] second"]
    assert list(notify.outbox_dir(up).glob("*.eml")) == []


def test_flush_outbox(
    settings: Settings,
    smtp_server: tuple[Controller, Inbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert notify.flush_outbox(settings) == -1  # SMTP not configured
    controller, inbox = smtp_server
    up = smtp_settings(monkeypatch, controller.port)
    assert notify.flush_outbox(up) == 0  # nothing kept yet
    notify.outbox_dir(up).mkdir(parents=True)
    msg = notify.build_message("[churnops] kept", "body", up)
    (notify.outbox_dir(up) / "1.eml").write_bytes(msg.as_bytes())
    assert notify.main(["flush"]) == 0
    assert [m["Subject"] for m in inbox.messages] == ["[churnops] kept"]


def test_login_with_username_and_password(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    del settings
    seen: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        del server, session, envelope, mechanism
        assert isinstance(auth, LoginPassword)
        seen.append((auth.login.decode(), auth.password.decode()))
        return AuthResult(success=auth.password == b"s3cret")

    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        good = smtp_settings(
            monkeypatch, controller.port, SMTP_USERNAME="bot", SMTP_PASSWORD="s3cret"
        )
        assert notify.send_email("[churnops] auth", "body", good) is True
    finally:
        controller.stop()
    assert seen == [("bot", "s3cret")]
    assert [m["Subject"] for m in inbox.messages] == ["[churnops] auth"]


def test_starttls_refused_by_the_server_is_logged_and_kept(
    settings: Settings,
    smtp_server: tuple[Controller, Inbox],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    del settings
    controller, inbox = smtp_server  # a plain server: it does not offer STARTTLS
    conf = smtp_settings(monkeypatch, controller.port, SMTP_STARTTLS="true")
    with caplog.at_level(logging.WARNING, logger="core.notify"):
        assert notify.send_email("[churnops] tls", "body", conf) is False
    assert "SMTPNotSupportedError" in caplog.text
    assert inbox.messages == []
    assert len(list(notify.outbox_dir(conf).glob("*.eml"))) == 1


def test_cli_desktop_and_email_return_codes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    del settings
    monkeypatch.setattr(plyer, "notification", FakeNotification())
    monkeypatch.setenv("DISPLAY", ":99")
    assert notify.main(["desktop", "title", "message"]) == 0
    assert notify.main(["email", "subject", "body"]) == 1  # no SMTP configured
