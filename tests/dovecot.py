"""A real IMAP server for the tests: Debian's Dovecot (package dovecot-imapd) on 127.0.0.1.

Each server gets a throwaway configuration in a folder of its own: its own base_dir, state
and log, Maildirs in that folder, one passwd-file user with a plain password, no TLS, a free
port. It runs in the foreground (``dovecot -F``) in a subprocess and is stopped with
SIGTERM. Without Dovecot the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from .smtp_sink import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


class Dovecot:
    """One running server and its single user."""

    host = "127.0.0.1"
    user = "bounces"
    password = "imap-test-password"

    def __init__(self) -> None:
        # not under pytest's tmp_path: Dovecot's unprivileged processes must reach it
        self.root = Path(tempfile.mkdtemp(prefix="digestbot-dovecot-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        root = self.root
        root.chmod(0o755)
        (root / "mail").mkdir()
        if os.geteuid() == 0:
            # mail is never accessed as root: it belongs to an ordinary system user
            mail = pwd.getpwnam("nobody")
            login, internal = "dovenull", "dovecot"
            os.chown(root / "mail", mail.pw_uid, mail.pw_gid)
        else:
            mail = pwd.getpwuid(os.geteuid())
            login = internal = mail.pw_name
        (root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        (root / "users").chmod(0o644)
        conf = root / "dovecot.conf"
        conf.write_text(
            CONFIG.format(
                root=root,
                port=self.port,
                uid=mail.pw_uid,
                gid=mail.pw_gid,
                login_user=login,
                internal_user=internal,
            )
        )
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        output = b""
        if self.proc.poll() is not None and self.proc.stdout is not None:
            output = self.proc.stdout.read()
        self.stop()
        raise RuntimeError(f"dovecot did not start: {output.decode(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def append(self, folder: str, message: bytes) -> None:
        with self.client() as client:
            client.append(folder, message)

    def messages(self, folder: str) -> list[bytes]:
        """The raw mails in a folder, oldest first ([] if it does not exist)."""
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            fetched = client.fetch(uids, [b"BODY.PEEK[]"]) if uids else {}
            return [bytes(fetched[uid][b"BODY[]"]) for uid in uids]

    def env(self) -> dict[str, str]:
        """The environment that points digestbot at this mailbox."""
        return {
            "DIGESTBOT_MAILBOX_HOST": self.host,
            "DIGESTBOT_MAILBOX_PORT": str(self.port),
            "DIGESTBOT_MAILBOX_SECURITY": "none",
            "DIGESTBOT_MAILBOX_USERNAME": self.user,
            "DIGESTBOT_MAILBOX_PASSWORD": self.password,
        }


def require_dovecot() -> None:
    """Skip without Dovecot, but fail under CI=true, where it must be installed."""
    if os.path.exists(DOVECOT):
        return
    message = (
        "Dovecot is not installed: `apt-get install -y dovecot-imapd` "
        "(the bounce mailbox tests run a real IMAP server)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
