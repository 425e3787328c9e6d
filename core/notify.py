"""Notifications at the end of a pipeline run: a desktop pop-up (plyer) and an email (smtplib).

Both notifiers are best-effort: on a headless machine, with no SMTP server configured or when a
backend fails they log one line and return ``False``; they never raise, so a notification can never
fail the pipeline it reports on. An email that could not be delivered is kept as an ``.eml`` file in
``<var_dir>/outbox`` and sent with the next email that goes through (or by ``churnops notify
flush``).
"""

from __future__ import annotations

import argparse
import logging
import os
import smtplib
import ssl
import sys
import time
import warnings
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid
from pathlib import Path

from core.arguments import add_command, doc_text
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

APP_NAME = "churnops"
SMTP_TIMEOUT_S = 15.0
SMTPS_PORT = 465


def has_display() -> bool:
    """Tell whether a desktop session can show a notification.

    Linux needs an X11/Wayland display or a D-Bus session bus; macOS and Windows always have one.
    """
    if not sys.platform.startswith("linux"):
        return True
    return any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
    )


def notify_desktop(title: str, message: str, timeout_s: int = 10) -> bool:
    """Show a desktop notification through plyer.

    Args:
        title: the notification's title, e.g. ``"churnops: pipeline code passed"``.
        message: its body (one or two short lines).
        timeout_s: how long the desktop should show it.

    Returns:
        True when the backend accepted the notification; False (after logging one line) on a
        headless machine or when the backend failed.
    """
    if not has_display():
        log.info("desktop notification skipped (headless): %s — %s", title, message)
        return False
    try:
        # Imported here: plyer picks its platform backend lazily, and tests swap
        # ``plyer.notification`` for a fake on machines without a notification daemon.
        import plyer  # pylint: disable=import-outside-toplevel

        with warnings.catch_warnings():
            # plyer warns (then fails) when neither dbus-python nor notify-send is available.
            warnings.simplefilter("ignore")
            plyer.notification.notify(
                title=title, message=message, app_name=APP_NAME, timeout=timeout_s
            )
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # Any backend error (NotImplementedError, D-Bus errors, missing binaries) must not fail
        # the pipeline being reported on: the contract is "log and return False".
        log.warning("desktop notification failed (%s: %s): %s", type(exc).__name__, exc, title)
        return False
    return True


def _recipients(settings: Settings) -> list[str]:
    return [addr.strip() for addr in (settings.smtp_to or "").split(",") if addr.strip()]


def build_message(subject: str, body: str, settings: Settings) -> EmailMessage:
    """Build the email sent by :func:`send_email` (From/To from ``SMTP_SENDER``/``SMTP_TO``)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.smtp_sender
    msg["To"] = ", ".join(_recipients(settings))
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="churnops.local")
    msg.set_content(body)
    return msg


def outbox_dir(settings: Settings) -> Path:
    """Where undelivered emails wait (``<var_dir>/outbox``)."""
    return settings.var_dir / "outbox"


def _keep_in_outbox(msg: EmailMessage, settings: Settings) -> Path | None:
    folder = outbox_dir(settings)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}.eml"
        path.write_bytes(msg.as_bytes(policy=policy.SMTP))
    except OSError as exc:
        log.warning("could not keep the email in %s: %s", folder, exc)
        return None
    return path


def _connect(settings: Settings) -> smtplib.SMTP:
    host = settings.smtp_host or ""
    if settings.smtp_port == SMTPS_PORT:
        context = ssl.create_default_context()
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            host, settings.smtp_port, timeout=SMTP_TIMEOUT_S, context=context
        )
    else:
        server = smtplib.SMTP(host, settings.smtp_port, timeout=SMTP_TIMEOUT_S)
        if settings.smtp_starttls:
            server.starttls(context=ssl.create_default_context())
    if settings.smtp_username:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        server.login(settings.smtp_username, password)
    return server


def _send_outbox(server: smtplib.SMTP, settings: Settings) -> int:
    """Send the kept emails over an open connection; return how many went out."""
    sent = 0
    folder = outbox_dir(settings)
    if not folder.is_dir():
        return 0
    for path in sorted(folder.glob("*.eml")):
        kept = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        server.send_message(kept)
        path.unlink()
        sent += 1
    if sent:
        log.info("sent %d kept email(s) from %s", sent, folder)
    return sent


def send_email(subject: str, body: str, settings: Settings) -> bool:
    """Send a plain-text email with the ``SMTP_*`` settings.

    Args:
        subject: the subject line.
        body: the plain-text body.
        settings: where ``smtp_host``, ``smtp_port``, ``smtp_starttls``, ``smtp_username``,
            ``smtp_password``, ``smtp_sender`` and ``smtp_to`` (comma-separated) come from.

    Returns:
        True when the server accepted the message. False after logging one line when SMTP is not
        configured (nothing is kept) or when delivery failed (the message is kept in the outbox
        and sent with the next successful email).
    """
    if not settings.smtp_host or not _recipients(settings):
        log.info("email not sent (SMTP_HOST/SMTP_TO not configured): %s", subject)
        return False
    msg = build_message(subject, body, settings)
    try:
        with _connect(settings) as server:
            server.send_message(msg)
            try:
                _send_outbox(server, settings)
            except (smtplib.SMTPException, OSError) as exc:
                log.warning("kept emails not sent yet (%s)", exc)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        kept = _keep_in_outbox(msg, settings)
        log.warning(
            "email not sent (%s: %s); kept in %s: %s",
            type(exc).__name__,
            exc,
            kept or "nowhere",
            subject,
        )
        return False
    log.info("email sent to %s: %s", msg["To"], subject)
    return True


def flush_outbox(settings: Settings) -> int:
    """Send every email kept in the outbox.

    Returns:
        How many were sent; -1 when SMTP is not configured or the server could not be reached
        (the emails stay in the outbox).
    """
    if not settings.smtp_host:
        log.info("outbox not flushed: SMTP_HOST is not configured")
        return -1
    try:
        with _connect(settings) as server:
            return _send_outbox(server, settings)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        log.warning("outbox not flushed (%s: %s)", type(exc).__name__, exc)
        return -1


def main(argv: Sequence[str] | None = None) -> int:
    """``churnops notify {desktop,email,flush}``: send a notification by hand."""
    parser = argparse.ArgumentParser(prog="churnops notify", description=doc_text(main.__doc__))
    sub = parser.add_subparsers(dest="command", required=True)
    desktop = add_command(sub, "desktop", "show a desktop notification")
    desktop.add_argument("title")
    desktop.add_argument("message")
    email = add_command(sub, "email", "send an email with the SMTP_* settings")
    email.add_argument("subject")
    email.add_argument("body")
    add_command(sub, "flush", "send the emails kept in <var_dir>/outbox")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "desktop":
        return 0 if notify_desktop(args.title, args.message) else 1
    if args.command == "email":
        return 0 if send_email(args.subject, args.body, get_settings()) else 1
    return 0 if flush_outbox(get_settings()) >= 0 else 1
