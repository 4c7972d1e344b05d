"""Credentials never survive `errors.scrub`, whatever a password holds, and the host always does;
`provenance.credentials_to_env` keeps them out of flow parameters."""

from __future__ import annotations

import os
import string
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lstm_pipeline import provenance
from lstm_pipeline.errors import has_credentials, scrub

SCHEMES = ["http", "https", "postgresql", "postgresql+psycopg2", "mysql", "sqlite"]
USERS = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True)
PATHS = st.from_regex(r"(/[A-Za-z0-9_.-]{0,10}){0,3}", fullmatch=True)
PRINTABLE = "".join(c for c in string.printable if not c.isspace())
# what a user may type, unescaped, or escaped as RFC 3986 asks
RAW_PASSWORDS = st.text(PRINTABLE, min_size=6, max_size=30)
QUOTED_PASSWORDS = st.text(string.printable, min_size=6, max_size=30).map(
    lambda p: quote(p, safe="")
)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(SCHEMES),
    user=USERS,
    password=st.one_of(RAW_PASSWORDS, QUOTED_PASSWORDS),
    host=HOSTS,
    port=st.sampled_from(["", ":5000", ":5432"]),
    path=PATHS,
)
def test_no_password_survives_scrub_and_the_host_always_does(
    scheme, user, password, host, port, path
):
    assume(password not in f"{scheme}://{host}{port}{path} did not answer")
    uri = f"{scheme}://{user}:{password}@{host}{port}{path}"
    line = f"MLflow tracking server {uri} did not answer"
    assert scrub(line) == f"MLflow tracking server {scheme}://***@{host}{port}{path} did not answer"
    assert has_credentials(uri)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(
        [
            "password",
            "PASSWORD",
            "passwd",
            "pwd",
            "token",
            "access_token",
            "key",
            "api_key",
            "apikey",
            "secret",
            "client_secret",
            "sig",
            "X-Amz-Signature",
            "auth",
        ]
    ),
    secret=QUOTED_PASSWORDS,
    host=HOSTS,
    path=PATHS,
    first=st.booleans(),
)
def test_secrets_in_a_query_string_are_scrubbed_and_the_rest_kept(name, secret, host, path, first):
    assume(secret not in f"https://{host}{path}?a=1&{name}=")
    query = f"{name}={secret}&a=1" if first else f"a=1&{name}={secret}"
    uri = f"https://{host}{path}?{query}"
    scrubbed = scrub(f"'{uri}' refused")
    assert secret not in scrubbed
    assert f"https://{host}{path}?" in scrubbed and "a=1" in scrubbed
    assert has_credentials(uri)


@pytest.mark.parametrize(
    "uri,clean,user,password",
    [
        ("https://alice:pa/ss@mlflow.example/x", "https://mlflow.example/x", "alice", "pa/ss"),
        ("http://bob:p@ss:w?rd#1@127.0.0.1:5000", "http://127.0.0.1:5000", "bob", "p@ss:w?rd#1"),
        ("https://al%40ice:p%2Fss@host:8443/x", "https://host:8443/x", "al@ice", "p/ss"),
    ],
)
def test_an_http_password_with_reserved_characters_moves_whole_to_mlflows_variables(
    monkeypatch, uri, clean, user, password
):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert provenance.credentials_to_env(uri) == clean
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == user
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == password


def test_a_query_token_moves_the_whole_uri_to_mlflows_variable(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = "https://mlflow.example/x?access_token=abc123"
    assert provenance.credentials_to_env(uri) is None
    assert os.environ["MLFLOW_TRACKING_URI"] == uri
