"""Hostile requests against every route of the workbench (property-based, hypothesis): odd paths, queries,
form fields and bodies never get a 500 or a traceback, never a file from outside the runs folder, and with a
token set, a wrong token is answered the same way for every route, whether or not the run exists."""

import re
import shutil
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount
from starlette.testclient import TestClient

from classlab.web.app import create_app

ORIGIN = {"origin": "http://127.0.0.1"}
STARTS_WORK = ("/explain", "/evaluate", "/export", "/retrain", "/trash", "/resume")
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
SEGMENT = st.one_of(TEXT, st.sampled_from(["..", "%2e%2e", "../..", ".jobs", ".trash", "a/../../etc", "\x00",
                                           "con", "x" * 2000, "%00", "~", "runs", "/etc/passwd"]))


@pytest.fixture(scope="module")
def bench(digits_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "runs"
    shutil.copytree(digits_runs["root"], root)
    (root.parent / "secret.txt").write_text("outside the runs folder")
    with TestClient(create_app(root), base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client, root, digits_runs


def routes(app) -> list[tuple[str, set[str]]]:
    return [(r.path, r.methods or {"GET"}) for r in app.routes if not isinstance(r, Mount)]


def fill(path: str, run: str, value: str) -> str:
    """The route's path with its first parameter set to ``run`` and the others to ``value``, percent-encoded as
    a browser sends them (slashes kept: ``../`` reaches the server as written)."""
    first = True

    def put(match):
        nonlocal first
        text, first = (run if first else value), False
        return urllib.parse.quote(text, safe="/")
    return re.sub(r"\{[^}]+\}", put, path)


def clean(response) -> None:
    assert response.status_code < 500, (response.request.url, response.text[:300])
    body = response.text
    assert "Traceback" not in body and 'File "' not in body
    assert "outside the runs folder" not in body


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=SEGMENT, query=st.dictionaries(st.sampled_from(["id", "t", "p", "side", "q", "sort", "order", "page",
                                                              "true", "min", "dup", "run", "dataset", "moved"]),
                                             TEXT, max_size=4))
def test_every_get_route_with_hostile_paths_and_queries(bench, value, query):
    client, root, runs = bench
    for path, methods in routes(client.app):
        if "GET" not in methods or path.endswith("/events"):  # events stream until the job ends
            continue
        for run in (runs["cnn"], value):
            clean(client.get(fill(path, run, value), params=query))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=SEGMENT, form=st.dictionaries(st.sampled_from(["id", "action", "label", "name", "note", "dataset",
                                                             "split", "format", "runs", "ticked", "command",
                                                             "model", "epochs", "run"]), TEXT, max_size=5),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
                                     "text/plain", "application/json", ""]))
def test_every_post_route_with_hostile_forms_and_bodies(bench, value, form, content_type):
    client, root, runs = bench
    before = sorted(p.name for p in root.iterdir())
    for path, methods in routes(client.app):
        if "POST" not in methods or path == "/jobs" or path.endswith(STARTS_WORK):
            continue  # these start a job, export or move a run even when the form is empty: tested by name
        for run in (runs["mlp"], value):
            target = fill(path, run, value)
            clean(client.post(target, data=form, headers=ORIGIN))
            body = "&".join(f"{k}={v}" for k, v in form.items()).encode()[:5000]
            clean(client.post(target, content=body[: len(body) // 2], headers={**ORIGIN, "content-type": content_type}))
    assert (root.parent / "secret.txt").read_text() == "outside the runs folder"  # untouched
    after = sorted(p.name for p in root.iterdir())
    assert set(after) - set(before) <= {".jobs"}  # nothing written beside the runs but the job journal


def test_a_wrong_token_gets_one_answer_for_every_route_whether_or_not_the_run_exists(digits_runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(digits_runs["root"], root)
    app = create_app(root, token="s3cret-token", allowed_hosts=("127.0.0.1", "example.org"))
    answers = set()
    with TestClient(app, base_url="http://example.org", raise_server_exceptions=False) as client:
        for path, methods in routes(app):
            for run in (digits_runs["cnn"], "20990101-000000-train-nothing"):
                for method in methods & {"GET", "POST"}:
                    for token in ({}, {"token": "wrong"}):
                        response = client.request(method, fill(path, run, "x"), params=token, headers=ORIGIN)
                        answers.add((response.status_code, response.text))
        assert answers == {(403, "a token is needed: open the URL classlab serve printed")}
        ok = client.get(f"/runs/{digits_runs['cnn']}", params={"token": "s3cret-token"})
        assert ok.status_code == 200
