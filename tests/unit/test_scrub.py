"""Credentials never survive `errors.scrub`, whatever a password holds, and the host always does;
`provenance.credentials_to_env` keeps them out of flow parameters; once a URI is judged, its
secrets are masked in any text, whatever characters (whitespace too) they hold."""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flows import commands
from flows.cli import build_parser
from lstm_pipeline import provenance, report
from lstm_pipeline.config import OPTUNA_STORAGE_ENV, PipelineConfig, build_config
from lstm_pipeline.errors import (
    MASK,
    forget_credentials,
    has_credentials,
    one_line,
    scrub,
    scrub_uri,
)
from lstm_pipeline.tracking import Store

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


# Secrets of every printable character, whitespace included (a space, a tab, a newline), raw
# or percent-escaped, given each way the CLI takes a URI.
ALL_PRINTABLE = st.text(string.printable, min_size=6, max_size=30)
WITH_WHITESPACE = st.builds(
    lambda left, space, right: left + space + right,
    st.text(string.printable, min_size=3, max_size=12),
    st.sampled_from([" ", "\t", "\n", "  ", "\r\n"]),
    st.text(string.printable, min_size=3, max_size=12),
)
ANY_SECRETS = st.one_of(ALL_PRINTABLE, WITH_WHITESPACE, WITH_WHITESPACE.map(quote))
CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
BASE = build_config()
BASE_TEXT = repr(BASE.model_dump()) + report.config_yaml(BASE) + repr(provenance.run_params(BASE))


@contextmanager
def fresh_process() -> Iterator[pytest.MonkeyPatch]:
    """No remembered secret and no credential variable, before and after (hypothesis runs many
    examples in one test, so not a function-scoped fixture)."""
    forget_credentials()
    with pytest.MonkeyPatch.context() as patch:
        for name in (*CREDENTIAL_VARIABLES, OPTUNA_STORAGE_ENV):
            patch.setenv(name, "")  # recorded, so a value set later is undone too (a bare
            patch.delenv(name)  # delenv of an unset name records nothing)
        try:
            yield patch
        finally:
            forget_credentials()


def given_as(way: str, uri: str, folder: Path, patch: pytest.MonkeyPatch) -> PipelineConfig:
    """The config the CLI hands its flows when `uri` comes `way`."""
    parse = build_parser().parse_args
    if way == "option":
        return commands.pipeline_config(parse(["train", "--tracking-uri", uri]))
    if way == "config file":
        path = folder / "secret.yaml"
        path.write_text(yaml.safe_dump({"tracking": {"tracking_uri": uri}}), encoding="utf-8")
        return commands.pipeline_config(parse(["train", "--config", str(path)]))
    if way == "MLFLOW_TRACKING_URI":
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        cfg = commands.pipeline_config(parse(["train"]))
        Store.open(cfg.tracking.tracking_uri)  # what every flow does first
        return cfg
    assert provenance.secret_to_env(uri, OPTUNA_STORAGE_ENV) is None  # what `tune` does
    return commands.pipeline_config(parse(["tune"]))


def survives(secret: str, text: str) -> bool:
    """Whether `secret` is still readable in scrubbed `text` (not just spelled by the mask)."""
    return secret in scrub(text).replace(MASK, "\0")


@settings(max_examples=150, deadline=None)
@given(
    way=st.sampled_from(["option", "config file", "MLFLOW_TRACKING_URI", "optuna storage"]),
    scheme=st.sampled_from(["http", "https", "postgresql"]),
    user=USERS,
    password=ANY_SECRETS,
    host=HOSTS,
)
def test_a_password_of_any_characters_given_any_way_is_masked_in_any_text_and_config(
    tmp_path_factory, way, scheme, user, password, host
):
    uri = f"{scheme}://{user}:{password}@{host}:5055/x"
    assume(password not in f"{scheme}://{user}:@{host}:5055/x did not answer" + BASE_TEXT)
    with fresh_process() as patch:
        cfg = given_as(way, uri, tmp_path_factory.mktemp("config"), patch)
        for written in (repr(cfg.model_dump()), report.config_yaml(cfg)):
            assert password not in written
        assert password not in repr(provenance.run_params(cfg))
        for text in (f"MLflow: {uri} did not answer", f"'{uri}'\nretrying", f"{uri!r} refused"):
            assert not survives(password, text), scrub(text)
            assert password not in one_line(RuntimeError(text))


SECRET_KEY_WORDS = [
    "pw", "pwd", "pass", "passwd", "password", "passphrase", "token", "secret", "key", "apikey",
    "api_key", "sig", "signature", "auth", "credential", "credentials", "session", "jwt",
    "bearer", "otp", "sas", "cookie", "ticket", "private_key",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    prefix=st.sampled_from(["", "x-", "access_", "X-Amz-", "client_", "my.", "refresh-"]),
    word=st.sampled_from(SECRET_KEY_WORDS),
    cases=st.lists(st.booleans(), min_size=24, max_size=24),  # one per letter of the key
    # `&` and `;` end a query value; an `@` makes all before it a user part (also credentials)
    secret=st.one_of(QUOTED_PASSWORDS, WITH_WHITESPACE.filter(lambda s: not set(s) & set("&;@"))),
    host=HOSTS,
    first=st.booleans(),
)
def test_a_query_secret_under_any_usual_key_spelling_is_credentials(
    prefix, word, cases, secret, host, first
):
    key = "".join(
        c.upper() if up else c.lower() for c, up in zip(prefix + word, cases, strict=False)
    )
    query = f"{key}={secret}&a=1" if first else f"a=1&{key}={secret}"
    uri = f"https://{host}/x?{query}"
    assume(secret not in f"https://{host}/x?a=1&{key}=" + BASE_TEXT)
    with fresh_process():
        assert has_credentials(uri)
        assert secret not in scrub_uri(uri) and "a=1" in scrub_uri(uri)
        if not any(c.isspace() for c in secret):  # free text ends a URI at whitespace
            assert not survives(secret, f"'{uri}' refused")
        assert provenance.credentials_to_env(uri) is None  # the whole URI moved out
        assert os.environ["MLFLOW_TRACKING_URI"] == uri
        assert not survives(secret, f"'{uri}' refused")  # remembered since
        assert provenance.secret_to_env(uri, OPTUNA_STORAGE_ENV) is None
