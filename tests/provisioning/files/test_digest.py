"""The server-side Digest check against hand-computed RFC 7616 responses."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dls.provisioning.files.digest import NONCE_LIFETIME, DigestVerifier, parse_authorization

MAC = "001565aabbcc"


def _response(
    algorithm: str,
    nonce: str,
    password: str,
    uri: str = "/prov/001565aabbcc.cfg",
    method: str = "GET",
    realm: str = "dls",
) -> str:
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

    def digest(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1, ha2 = digest(f"{MAC}:{realm}:{password}"), digest(f"{method}:{uri}")
    response = digest(f"{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}")
    return (
        f'Digest username="{MAC}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm={algorithm}, qop=auth, nc=00000001, cnonce="0a4f113b", '
        f'response="{response}"'
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_correct_response_verifies(algorithm: str) -> None:
    verifier = DigestVerifier(b"k" * 32)
    nonce = verifier.nonce()
    credentials = parse_authorization(_response(algorithm, nonce, 'p"w<&>ä'))
    assert credentials is not None
    assert verifier.nonce_state(credentials.nonce) == "fresh"
    assert verifier.verify(credentials, "GET", MAC, 'p"w<&>ä')
    assert not verifier.verify(credentials, "GET", MAC, "other")
    assert not verifier.verify(credentials, "PUT", MAC, 'p"w<&>ä')
    assert not verifier.verify(credentials, "GET", "001565aabbcd", 'p"w<&>ä')


def test_nonces_are_signed_and_expire() -> None:
    verifier = DigestVerifier(b"k" * 32)
    nonce = verifier.nonce(now=1_000_000)
    assert verifier.nonce_state(nonce, now=1_000_000 + NONCE_LIFETIME) == "fresh"
    assert verifier.nonce_state(nonce, now=1_000_001 + NONCE_LIFETIME) == "stale"
    assert DigestVerifier(b"x" * 32).nonce_state(nonce, now=1_000_000) == "bad"
    assert verifier.nonce_state("garbage") == "bad"


def test_challenges_offer_md5_first_and_mark_stale() -> None:
    challenges = DigestVerifier(b"k" * 32).challenges(stale=True)
    assert "algorithm=MD5" in challenges[0] and "algorithm=SHA-256" in challenges[1]
    assert all('realm="dls"' in c and "stale=true" in c for c in challenges)


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Digest", 'Digest username="x"', "Digest " + "a=b, " * 1000],
)
def test_malformed_headers_are_refused(header: str) -> None:
    assert parse_authorization(header) is None


def test_bytes_that_are_not_utf8_are_no_credentials() -> None:
    # aiohttp's str of b'username="\xff"': hashed as it came, it raised (a 500).
    header = 'Digest username="\udcff", realm="dls", nonce="n", uri="/a", response="00"'
    assert parse_authorization(header) is None
    assert parse_authorization(header.replace("\udcff", "ü")) is not None  # UTF-8 is fine


def test_wrong_realm_or_algorithm_never_verifies() -> None:
    verifier = DigestVerifier(b"k" * 32)
    nonce = verifier.nonce()
    other_realm = parse_authorization(_response("MD5", nonce, "pw", realm="evil"))
    assert other_realm is not None and not verifier.verify(other_realm, "GET", MAC, "pw")
    header = _response("MD5", nonce, "pw").replace("algorithm=MD5", "algorithm=SHA-512")
    sha512 = parse_authorization(header)
    assert sha512 is not None and not verifier.verify(sha512, "GET", MAC, "pw")


def test_the_mac_user_name_may_come_in_upper_case() -> None:
    verifier = DigestVerifier(b"k" * 32)
    header = _response("MD5", verifier.nonce(), "pw").replace(MAC, MAC.upper())
    upper = parse_authorization(header)
    assert upper is not None and upper.username == MAC.upper()
    # The phone hashed its own spelling; the check must too.
    h = hashlib.md5
    ha1 = h(f"{MAC.upper()}:dls:pw".encode()).hexdigest()
    ha2 = h(f"GET:{upper.uri}".encode()).hexdigest()
    response = h(f"{ha1}:{upper.nonce}:00000001:0a4f113b:auth:{ha2}".encode()).hexdigest()
    fixed = parse_authorization(header.replace(upper.response, response))
    assert fixed is not None and verifier.verify(fixed, "GET", MAC, "pw")


@given(
    username=st.text(
        st.sampled_from('a"\\, =') | st.characters(codec="utf-8", exclude_characters="\x00"),
        max_size=40,
    ),
    # UTF-8 text: bytes that are not are no credentials (test_bytes_that_are_not_utf8_...)
    uri=st.text(st.characters(codec="utf-8", exclude_characters='"\\\x00'), max_size=60),
)
def test_quoted_values_with_escapes_and_separators_come_back_whole(username: str, uri: str) -> None:
    quoted = username.replace("\\", "").replace('"', '\\"')  # a backslash only escapes a quote
    header = (
        f'Digest username="{quoted}", realm="dls", nonce="n, o", uri="{uri}", '
        f'response="ABC", qop=auth, nc=00000001, cnonce=""'
    )
    credentials = parse_authorization(header)
    assert credentials is not None
    assert credentials.username == username.replace("\\", "")
    assert (credentials.uri, credentials.nonce, credentials.response) == (uri, "n, o", "abc")
    assert (credentials.qop, credentials.nc, credentials.cnonce) == ("auth", "00000001", "")
