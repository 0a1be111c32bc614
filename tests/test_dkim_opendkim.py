"""DKIM signatures checked by a second verifier: Debian's ``opendkim-testmsg`` (OpenDKIM).

OpenDKIM looks the public key up through the system's resolver, so each
check runs inside a network namespace of this test session (``ip netns``,
as root) whose ``resolv.conf`` names a DNS server of the tests
(:mod:`tests.dns_txt_server`) on the namespace's own 127.0.0.1; it serves
the keys' TXT records and nothing else, and nothing leaves the machine. The
namespace, its ``/etc/netns`` directory and the DNS server are removed in
teardown. Where ``opendkim-testmsg`` is not installed (``make services``
installs Debian's ``opendkim-tools``) or namespaces cannot be made (not
root), the tests skip saying why; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amsdal_mail.mime import render_chunks
from amsdal_mail.mime.dkim import DKIMSigner
from tests.test_dkim import DOMAIN, Key, _ed25519, _messages, _rsa

ROOT = Path(__file__).resolve().parents[1]
SELECTORS = {"rsa": "opendkim-rsa", "ed25519": "opendkim-ed"}
#: How long the namespace's DNS server may take to start, and one verification to end.
WAIT = 20.0

Verify = Callable[[bytes], subprocess.CompletedProcess[bytes]]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and opendkim-testmsg cannot run: {reason}")
    print(f"skipping the OpenDKIM checks: {reason}")
    pytest.skip(reason)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=WAIT)


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    """An RSA (2048-bit) and an Ed25519 key of this module."""
    from cryptography.hazmat.primitives import serialization

    return {
        "rsa": _rsa("rsa", serialization.PrivateFormat.TraditionalOpenSSL),
        "ed25519": _ed25519(),
    }


@pytest.fixture(scope="module")
def opendkim(keys: dict[str, Key], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verify]:
    """Return a function running ``opendkim-testmsg`` on a message inside the namespace."""
    binary = shutil.which("opendkim-testmsg") or (
        "/usr/sbin/opendkim-testmsg" if os.access("/usr/sbin/opendkim-testmsg", os.X_OK) else None
    )
    if binary is None:
        _unavailable("opendkim-testmsg is not installed (Debian's opendkim-tools)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        _unavailable("network namespaces need root and the ip command")
    assert binary is not None
    name = f"amsdal-dkim-{os.getpid()}"
    netns_etc = Path("/etc/netns") / name
    directory = tmp_path_factory.mktemp("opendkim")
    records = directory / "records.json"
    records.write_text(
        json.dumps(
            {
                f"{SELECTORS[kind]}._domainkey.{DOMAIN}": key.record.decode()
                for kind, key in keys.items()
            }
        )
    )
    dns: subprocess.Popen[bytes] | None = None
    try:
        try:
            _run("ip", "netns", "add", name)
        except subprocess.CalledProcessError as exc:
            _unavailable(f"ip netns add failed: {exc.stderr.decode(errors='replace').strip()}")
        netns_etc.mkdir(parents=True, exist_ok=True)
        (netns_etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2\n")
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        # `ip netns exec` execs the command: the PID is the DNS server's own.
        dns = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-m", "tests.dns_txt_server",
             str(records), "127.0.0.1", "53"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        assert dns.stdout is not None
        ready, _, _ = select.select([dns.stdout], [], [], WAIT)
        line = dns.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            dns.kill()
            _, err = dns.communicate(timeout=WAIT)
            raise RuntimeError(f"the namespace's DNS server did not start: {err.decode()[-2000:]}")

        def verify(data: bytes) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                ["ip", "netns", "exec", name, binary],
                input=data,
                capture_output=True,
                timeout=WAIT,
                cwd=directory,
            )

        yield verify
    finally:
        if dns is not None and dns.poll() is None:
            dns.kill()
            dns.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while subprocess.run(["ip", "netns", "del", name], capture_output=True).returncode:
            if time.monotonic() > deadline or name not in _namespaces():
                break
            time.sleep(0.05)  # polling interval: the namespace ends with its last process
        shutil.rmtree(netns_etc, ignore_errors=True)


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _signed(key: Key, kind: str, message: str) -> bytes:
    signer = DKIMSigner(selector=SELECTORS[kind], domain=DOMAIN, private_key=key.pem)
    return b"".join(signer.sign(render_chunks(_messages()[message])))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize("message", list(_messages()))
def test_opendkim_verifies_the_signature(
    opendkim: Verify, keys: dict[str, Key], kind: str, message: str
) -> None:
    """Plain, HTML, attachment, non-ASCII, dot-stuffed, unsubscribe: OpenDKIM says it verifies."""
    result = opendkim(_signed(keys[kind], kind, message))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stderr == b"", result.stderr.decode(errors="replace")


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("a signed header", lambda data: data.replace(b"Subject: Plain", b"Subject: Plains", 1)),
        ("the body", lambda data: data.replace(b"Second line.", b"Second line!", 1)),
    ],
)
def test_opendkim_refuses_an_altered_message(
    opendkim: Verify, keys: dict[str, Key], what: str, change: Callable[[bytes], bytes]
) -> None:
    """Changing a signed header or the body after signing: OpenDKIM reports a bad signature."""
    data = _signed(keys["rsa"], "rsa", "plain")
    altered = change(data)
    assert altered != data, what
    result = opendkim(altered)
    assert result.returncode != 0, f"{what} altered, yet OpenDKIM accepted the signature"
    assert b"Bad signature" in result.stderr, result.stderr.decode(errors="replace")
