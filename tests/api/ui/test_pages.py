"""The dashboard over plain HTTP: sessions, CSRF, scopes, and names that try to be markup."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from db.tokens import create_api_token
from tests.api.conftest import Api, Pki, make_token, new_key
from tests.api.ui.conftest import Browser, signed_in

SCRIPT = "<script>alert(1)</script>"


def add_peer(operator: Api, interface_id: int, name: str = "laptop") -> int:
    r = operator.post(
        f"/v1/interfaces/{interface_id}/peers", json={"name": name, "public_key": new_key()}
    )
    assert r.status_code == 202, r.text
    return int(r.json()["peer_id"])


def test_signing_in_sets_a_strict_cookie_without_the_token_text(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any]
) -> None:
    browser = Browser(api_url, api_pki.ca)
    token = make_token(db, "reader")
    browser.get("/ui/login")
    r = browser.post("/ui/login", {"token": token}, csrf=True)
    assert r.status_code == 200 and "Overview" in r.text
    set_cookie = r.history[0].headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "Secure" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Path=/ui" in set_cookie and token not in set_cookie
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_pages_need_a_session(api_url: str, api_pki: Pki) -> None:
    r = Browser(api_url, api_pki.ca).get("/ui/jobs", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].startswith("/ui/login")


def test_a_wrong_token_is_refused_on_the_sign_in_page(api_url: str, api_pki: Pki) -> None:
    browser = Browser(api_url, api_pki.ca)
    browser.get("/ui/login")
    r = browser.post("/ui/login", {"token": "ely_nope"})
    assert r.status_code == 401 and "not valid" in r.text


def test_a_form_without_its_csrf_token_is_refused(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], interface_id: int
) -> None:
    browser = signed_in(api_url, api_pki.ca, db, "admin")
    r = browser.post(f"/ui/interfaces/{interface_id}/tokens", {"ttl_seconds": "60"}, csrf=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    browser.csrf = "forged"
    r = browser.post(f"/ui/interfaces/{interface_id}/tokens", {"ttl_seconds": "60"})
    assert r.status_code == 403
    assert db.execute("SELECT count(*) AS n FROM enrollment_tokens").fetchone() == {"n": 0}
    other = Browser(api_url, api_pki.ca)  # a sign-in form posted without its session's token
    other.get("/ui/login")
    r = other.post("/ui/login", {"token": make_token(db, "admin")}, csrf=False)
    assert r.status_code == 403


def test_a_reader_sees_no_change_buttons_and_crafted_posts_are_refused(
    api_url: str,
    api_pki: Pki,
    db: psycopg.Connection[Any],
    operator: Api,
    interface_id: int,
) -> None:
    peer_id = add_peer(operator, interface_id)
    made = operator.post(
        f"/v1/interfaces/{interface_id}/enrollment-tokens", json={"ttl_seconds": 60}
    ).json()
    reader = signed_in(api_url, api_pki.ca, db, "reader")
    page = reader.get(f"/ui/peers/{peer_id}").text
    assert "laptop" in page and 'id="disable"' not in page and 'id="delete"' not in page
    page = reader.get(f"/ui/interfaces/{interface_id}").text
    assert 'id="tokens-link"' not in page
    assert '<textarea name="policy"' not in reader.get(f"/ui/interfaces/{interface_id}/policy").text
    for path, data in (
        (f"/ui/peers/{peer_id}/disable", {}),
        (f"/ui/peers/{peer_id}/delete", {}),
        (f"/ui/interfaces/{interface_id}/tokens", {"ttl_seconds": "60"}),
        (f"/ui/enrollment-tokens/{made['id']}/revoke", {}),
        (f"/ui/interfaces/{interface_id}/policy", {"policy": '{"default": "accept"}'}),
    ):
        r = reader.post(path, data)
        assert r.status_code == 403 and "insufficient_scope" in r.text, path
    peer = db.execute("SELECT enabled, status FROM peers WHERE id = %s", (peer_id,)).fetchone()
    assert peer == {"enabled": True, "status": "pending"}
    assert db.execute("SELECT count(*) AS n FROM enrollment_tokens").fetchone() == {"n": 1}
    kinds = [r["kind"] for r in db.execute("SELECT kind FROM jobs ORDER BY created_at")]
    assert kinds == ["create_interface", "add_peer"]


def test_an_operator_disables_a_peer_through_its_confirmation(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], operator: Api, interface_id: int
) -> None:
    peer_id = add_peer(operator, interface_id)
    browser = signed_in(api_url, api_pki.ca, db, "operator")
    confirm = browser.get(f"/ui/peers/{peer_id}/disable")
    assert confirm.status_code == 200 and "Yes, disable laptop" in confirm.text
    r = browser.post(f"/ui/peers/{peer_id}/disable")
    assert r.status_code == 200 and "job-accepted" in r.text
    row = db.execute("SELECT enabled FROM peers WHERE id = %s", (peer_id,)).fetchone()
    assert row == {"enabled": False}
    audit = db.execute(
        "SELECT actor, action FROM audit WHERE target = %s ORDER BY id DESC", (f"peer:{peer_id}",)
    ).fetchone()
    assert audit is not None and audit["action"] == "update_peer"
    signed_in_as = db.execute("SELECT max(id) AS id FROM api_tokens").fetchone()
    assert signed_in_as is not None  # the audit names the signed-in token, as the API does
    assert audit["actor"] == f"token:{signed_in_as['id']}:test-operator"


def test_names_that_are_markup_are_shown_as_text(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], operator: Api, interface_id: int
) -> None:
    peer_id = add_peer(operator, interface_id)
    db.execute("UPDATE peers SET name = %s, tags = %s", (SCRIPT, ["ok"]))
    db.execute(
        "INSERT INTO enrollment_tokens (interface_id, name, token_hash, uses_total, uses_left,"
        " expires_at) VALUES (%s, %s, 'x', 1, 1, now() + interval '1 hour')",
        (interface_id, SCRIPT),
    )
    browser = Browser(api_url, api_pki.ca)
    _, text = create_api_token(db, SCRIPT, "operator", None, "test")
    browser.sign_in(text)
    for path in (
        f"/ui/peers/{peer_id}",
        f"/ui/interfaces/{interface_id}",
        f"/ui/interfaces/{interface_id}/peer-rows",
        f"/ui/interfaces/{interface_id}/tokens",
        "/ui/audit",
    ):
        r = browser.get(path)
        assert r.status_code == 200, path
        assert SCRIPT not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text, path


def test_a_revoked_or_expired_tokens_session_ends_at_its_next_request(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], admin: Api
) -> None:
    made = admin.post("/v1/tokens", json={"name": "alice", "scope": "reader"}).json()
    browser = Browser(api_url, api_pki.ca)
    browser.sign_in(made["token"])
    assert browser.get("/ui/jobs").status_code == 200
    assert admin.delete(f"/v1/tokens/{made['id']}").status_code == 200
    r = browser.get("/ui/jobs")
    assert r.url.endswith("/ui/login?why=the+API+token+has+been+revoked"), r.url
    assert browser.get("/ui/jobs", allow_redirects=False).status_code == 303  # cookie cleared

    other = signed_in(api_url, api_pki.ca, db, "reader")
    db.execute("UPDATE api_tokens SET expires_at = now() WHERE scope = 'reader'")
    r = other.get("/ui/", allow_redirects=False)
    assert r.status_code == 303 and "expired" in r.headers["Location"]


def test_signing_out_ends_the_session_even_for_a_copied_cookie(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any]
) -> None:
    browser = signed_in(api_url, api_pki.ca, db, "reader")
    copied = dict(browser.http.cookies)
    browser.get("/ui/")
    r = browser.post("/ui/logout")
    assert r.status_code == 200 and "signed out" in r.text
    thief = Browser(api_url, api_pki.ca)
    thief.http.cookies.update(copied)
    assert thief.get("/ui/", allow_redirects=False).status_code == 303
    actions = [r["action"] for r in db.execute("SELECT action FROM audit ORDER BY id")]
    assert actions == ["dashboard.sign_in", "dashboard.sign_out"]


def test_an_operator_creates_lists_and_revokes_an_enrollment_token(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], interface_id: int
) -> None:
    browser = signed_in(api_url, api_pki.ca, db, "operator")
    browser.get(f"/ui/interfaces/{interface_id}/tokens")
    r = browser.post(
        f"/ui/interfaces/{interface_id}/tokens",
        {"name": "laptops", "ttl_seconds": "600", "uses": "2", "tags": "laptop, ops"},
    )
    assert r.status_code == 200, r.text
    assert f"elysium-client enroll --server {api_url} --ca ca.pem --token elyenr_" in r.text
    assert "--name laptops" in r.text and "<svg" in r.text
    row = db.execute("SELECT id, uses_total, tags FROM enrollment_tokens").fetchone()
    assert row is not None and (row["uses_total"], row["tags"]) == (2, ["laptop", "ops"])
    listing = browser.get(f"/ui/interfaces/{interface_id}/tokens").text
    assert "laptops" in listing and "elyenr_" not in listing
    r = browser.post(f"/ui/enrollment-tokens/{row['id']}/revoke")
    assert r.status_code == 200 and "revoked" in r.text
    r = browser.post(f"/ui/interfaces/{interface_id}/tokens", {"ttl_seconds": "-5"})
    assert r.status_code == 400 and "ttl_seconds" in r.text
    assert browser.get("/ui/ca.pem").text.startswith("-----BEGIN CERTIFICATE-----")


def test_an_admin_edits_the_policy_as_json_and_bad_json_is_named(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], interface_id: int
) -> None:
    browser = signed_in(api_url, api_pki.ca, db, "admin")
    browser.get(f"/ui/interfaces/{interface_id}/policy")
    r = browser.post(f"/ui/interfaces/{interface_id}/policy", {"policy": "{nope"})
    assert r.status_code == 400 and "not JSON" in r.text
    r = browser.post(
        f"/ui/interfaces/{interface_id}/policy",
        {
            "policy": json.dumps(
                {"rules": [{"from": "tag:nobody", "to": "any", "action": "accept"}]}
            )
        },
    )
    assert r.status_code == 400 and "rules.0.from" in r.text
    r = browser.post(
        f"/ui/interfaces/{interface_id}/policy",
        {"policy": '{"default": "accept", "rules": []}'},
    )
    assert r.status_code == 200 and "accepted" in r.text
    policy = db.execute("SELECT policy FROM interfaces WHERE id = %s", (interface_id,)).fetchone()
    assert policy is not None and policy["policy"]["default"] == "accept"


def test_jobs_and_audit_pages_filter(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], operator: Api, interface_id: int
) -> None:
    peer_id = add_peer(operator, interface_id, "filtered")
    browser = signed_in(api_url, api_pki.ca, db, "reader")
    jobs = browser.get("/ui/jobs?status=queued")
    assert jobs.status_code == 200 and "add_peer" in jobs.text
    assert "add_peer" not in browser.get("/ui/jobs?status=failed").text
    assert browser.get("/ui/jobs?status=bogus").status_code == 400
    audit = browser.get(f"/ui/audit?target=peer:{peer_id}")
    assert f"peer:{peer_id}" in audit.text and "create_interface" not in audit.text


def test_peer_search_and_pages_stay_fast_at_10000_peers(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], interface_id: int
) -> None:
    db.execute(
        "INSERT INTO peers (interface_id, name, public_key, address, status)"
        " SELECT %s, 'peer-' || g, rpad('k' || g, 43, 'A') || '=',"
        " '10.30.0.0'::inet + g, 'active' FROM generate_series(2, 10001) g",
        (interface_id,),
    )
    db.execute("ANALYZE peers")
    browser = signed_in(api_url, api_pki.ca, db, "reader")
    started = time.monotonic()
    first = browser.get(f"/ui/interfaces/{interface_id}")
    found = browser.get(f"/ui/interfaces/{interface_id}/peer-rows?q=PEER-9999")
    deep = browser.get(f"/ui/interfaces/{interface_id}?after=9900")
    elapsed = time.monotonic() - started
    assert first.status_code == found.status_code == deep.status_code == 200
    assert first.text.count("/ui/peers/") == 50 and 'id="next-page"' in first.text
    assert found.text.count("/ui/peers/") == 1 and "peer-9999<" in found.text
    assert "peer-9902<" in deep.text  # ids follow the names here: peer-N has id N - 1
    assert elapsed < 30, elapsed  # generous: the pages' speed is bench/ui.py's figure
    plan = db.execute(
        "EXPLAIN SELECT id FROM peers p WHERE interface_id = %s AND lower(name) LIKE 'peer-99%%'"
        " AND id > 0 ORDER BY id LIMIT 50",
        (interface_id,),
    ).fetchall()
    assert "Seq Scan" not in " ".join(r["QUERY PLAN"] for r in plan)


def test_a_hub_page_shows_its_mesh_links(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], admin: Api
) -> None:
    for name, ip in (("hub-a", "198.18.0.1"), ("hub-b", "198.18.0.2")):
        assert admin.post("/v1/hubs", json={"name": name, "endpoint": ip}).status_code == 201
        assert admin.put(f"/v1/hubs/{name}/mesh", json={"listen_port": 51900}).status_code == 202
    db.execute(
        "INSERT INTO mesh_links (hub_id, peer_hub_id, error_code, error_message)"
        " SELECT a.id, b.id, 'mesh_peer_unreachable', 'no route' FROM hubs a, hubs b"
        " WHERE a.name = 'hub-a' AND b.name = 'hub-b'"
    )
    browser = signed_in(api_url, api_pki.ca, db, "reader")
    page = browser.get("/ui/hubs/hub-a")
    assert page.status_code == 200 and 'id="mesh-links"' in page.text
    assert "hub-b" in page.text and "mesh_peer_unreachable" in page.text
    assert "198.18.0.1:51900" in page.text and "198.18.0.2:51900" in page.text
    assert admin.delete("/v1/hubs/hub-a/mesh").status_code == 202
    assert "Not in the mesh" in browser.get("/ui/hubs/hub-a").text


def test_the_interface_page_says_whether_direct_paths_are_on(
    api_url: str, api_pki: Pki, db: psycopg.Connection[Any], admin: Api, interface_id: int
) -> None:
    reader = signed_in(api_url, api_pki.ca, db, "reader")
    assert 'id="direct">off' in reader.get(f"/ui/interfaces/{interface_id}").text
    r = admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": True})
    assert r.status_code == 202, r.text
    assert 'id="direct">on' in reader.get(f"/ui/interfaces/{interface_id}").text


def test_a_peer_page_on_a_direct_interface_shows_its_reported_paths(
    api_url: str,
    api_pki: Pki,
    db: psycopg.Connection[Any],
    admin: Api,
    operator: Api,
    interface_id: int,
) -> None:
    a, b = add_peer(operator, interface_id, "a"), add_peer(operator, interface_id, "b")
    reader = signed_in(api_url, api_pki.ca, db, "reader")
    assert 'id="paths"' not in reader.get(f"/ui/peers/{a}").text  # direct off
    assert admin.patch(f"/v1/interfaces/{interface_id}", json={"direct": True}).status_code == 202
    db.execute(
        "INSERT INTO peer_paths (peer_id, other_id, path, why) VALUES (%s, %s, 'relayed', %s)",
        (a, b, "no candidate answered"),
    )
    page = reader.get(f"/ui/peers/{a}").text
    assert 'id="paths"' in page and "relayed" in page and "no candidate answered" in page
