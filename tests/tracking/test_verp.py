"""VERP tokens: message_key, encode_verp and decode_verp; forged or altered ones refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amsdal_mail.tracking import VerpToken, decode_verp, encode_verp, message_key

SECRET = "s3cret"


def test_message_key_ignores_brackets_and_is_short() -> None:
    """The key of a Message-ID is 12 base32 characters, the same with or without brackets."""
    key = message_key("<abc.1@app.test>")
    assert key == message_key("abc.1@app.test") == message_key("  <abc.1@app.test> ")
    assert len(key) == 12 and key.isalnum() and key == key.lower()
    assert key != message_key("<abc.2@app.test>")
    with pytest.raises(ValueError, match="empty"):
        message_key("<>")


def test_round_trip_and_shape() -> None:
    """A token names the message and the recipient, readable as local=domain."""
    key = message_key("<m@app.test>")
    address = encode_verp("bounces@returns.test", key, "alice@example.org", SECRET)
    assert address.startswith(f"bounces+{key}-")
    assert address.endswith("-alice=example.org@returns.test")
    assert decode_verp(address, secret=SECRET) == VerpToken(key, "alice@example.org")
    assert decode_verp(f"<{address}>", secret=SECRET).recipient == "alice@example.org"
    # Servers may change the case of a local part: the token still checks.
    assert decode_verp(address.upper(), secret=SECRET).message_key == key


def test_non_atom_recipient_is_base32() -> None:
    """A recipient that is no atom (non-ASCII, quoted) travels base32-encoded after '~'."""
    key = message_key("<m@app.test>")
    address = encode_verp("bounces@returns.test", key, "jérôme@example.org", SECRET)
    assert "-~" in address and address.isascii()
    assert decode_verp(address, secret=SECRET).recipient == "jérôme@example.org"


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without secret=, AMSDAL_EMAIL_VERP_SECRET signs and checks; without either, an error."""
    monkeypatch.setenv("AMSDAL_EMAIL_VERP_SECRET", SECRET)
    address = encode_verp("b@r.test", message_key("<m@a>"), "x@y.test", None)
    assert decode_verp(address).recipient == "x@y.test"
    assert decode_verp(address, secret=SECRET).recipient == "x@y.test"
    monkeypatch.delenv("AMSDAL_EMAIL_VERP_SECRET")
    with pytest.raises(ValueError, match="AMSDAL_EMAIL_VERP_SECRET"):
        decode_verp(address)


def test_forged_and_altered_tokens_are_refused() -> None:
    """Another secret, another recipient, another key or a changed signature: ValueError."""
    key = message_key("<m@app.test>")
    address = encode_verp("bounces@returns.test", key, "alice@example.org", SECRET)
    with pytest.raises(ValueError, match="not signed"):
        decode_verp(address, secret="other")
    with pytest.raises(ValueError, match="not signed"):
        decode_verp(address.replace("alice=", "mallory="), secret=SECRET)
    other_key = message_key("<n@app.test>")
    with pytest.raises(ValueError, match="not signed"):
        decode_verp(address.replace(key, other_key), secret=SECRET)
    sig = address.split("-")[1]
    flipped = ("a" if sig[0] != "a" else "b") + sig[1:]
    with pytest.raises(ValueError, match="not signed"):
        decode_verp(address.replace(sig, flipped), secret=SECRET)
    for bad in ("bounces@returns.test", "bounces+abc@returns.test", "no-at-sign", ""):
        with pytest.raises(ValueError, match="not a VERP address"):
            decode_verp(bad, secret=SECRET)


_local = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,20}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)


@settings(max_examples=150, deadline=None)
@given(_local, st.from_regex(r"[a-z0-9]{1,10}\.test", fullmatch=True), st.text(min_size=1))
def test_round_trip_property(local: str, domain: str, message_id: str) -> None:
    """Any recipient and Message-ID round-trip; the base path may hold a '+' itself."""
    if not message_id.strip().strip("<>").strip():
        return
    key = message_key(message_id)
    recipient = f"{local}@{domain}"
    for base in ("bounces@returns.test", "app+bounces@returns.test"):
        address = encode_verp(base, key, recipient, SECRET)
        assert decode_verp(address, secret=SECRET) == VerpToken(key, recipient)
