"""``elysium login``/``logout`` and profiles: a token is kept only after the API accepts it,
in a 0600 file; every way a profile can be wrong is one line on stderr and its exit code."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.cli.conftest import Operator


def profile_file(ely: Operator, name: str = "default") -> Path:
    return ely.config / "elysium" / "profiles" / f"{name}.json"


def test_login_checks_the_token_and_keeps_server_ca_copy_and_token_0600(
    operator: Operator,
) -> None:
    done = operator.login(profile="ops")

    path = profile_file(operator, "ops")
    body = json.loads(path.read_text())
    assert done.code == 0 and "logged in" in done.out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert body["server"] == operator.url and body["token"] == operator.admin_token
    ca_copy = Path(body["ca"])
    assert ca_copy.read_bytes() == operator.ca.read_bytes() and ca_copy != operator.ca
    assert stat.S_IMODE(ca_copy.stat().st_mode) == 0o600


def test_the_token_comes_from_stdin_with_dash_or_when_stdin_is_not_a_terminal(
    operator: Operator,
) -> None:
    reader = operator.token("reader")
    base = ("login", "--server", operator.url, "--ca", str(operator.ca))

    dash = operator(*base, "--profile", "dash", "--token", "-", stdin=reader + "\n")
    piped = operator(*base, "--profile", "piped", stdin=reader + "\n")

    assert dash.code == 0 and piped.code == 0
    for name in ("dash", "piped"):
        assert json.loads(profile_file(operator, name).read_text())["token"] == reader
    assert reader not in dash.out + dash.err


def test_a_refused_token_is_one_line_exit_5_and_keeps_no_profile(operator: Operator) -> None:
    done = operator.login("ely_not-a-token", profile="refused")

    assert done.code == 5, done
    assert done.err.startswith("elysium: the API refused the token")
    assert len(done.err.strip().splitlines()) == 1
    assert not profile_file(operator, "refused").exists()


def test_a_server_that_is_down_is_one_line_exit_3(operator: Operator) -> None:
    done = operator(
        "login", "--server", "https://127.0.0.1:1", "--ca", str(operator.ca),
        "--profile", "down", "--token", operator.admin_token,
    )  # fmt: skip

    assert done.code == 3, done
    assert done.err.startswith("elysium: cannot reach the API at https://127.0.0.1:1")
    assert len(done.err.strip().splitlines()) == 1 and "Traceback" not in done.err


def test_a_server_the_ca_does_not_vouch_for_is_exit_4(operator: Operator, tmp_path: Path) -> None:
    from elysium import pki

    other, _ = pki.create_ca("Someone else")
    pki.write_certificate(tmp_path / "other.pem", other)

    done = operator(
        "login", "--server", operator.url, "--ca", str(tmp_path / "other.pem"),
        "--profile", "other-ca", "--token", operator.admin_token,
    )  # fmt: skip

    assert done.code == 4, done
    assert "not trusted by the CA in" in done.err and len(done.err.strip().splitlines()) == 1


def test_a_profile_whose_token_was_revoked_is_one_line_exit_5(operator: Operator) -> None:
    made = json.loads(
        operator.ok("token", "create", "--scope", "reader", "--name", "soon-gone", "--json")
    )
    assert operator.login(made["token"], profile="revoked").code == 0
    operator.ok("token", "revoke", str(made["id"]))

    done = operator("hub", "list", "--profile", "revoked")

    assert done.code == 5, done
    assert done.err.strip().splitlines() == [
        "elysium: the API refused the token of profile 'revoked' (the API token has been"
        " revoked); log in again"
    ]


def test_the_profile_is_chosen_by_flag_then_environment_and_logout_forgets_it(
    operator: Operator,
) -> None:
    assert operator.login(profile="envchosen").code == 0

    by_env = operator("hub", "list", ELYSIUM_PROFILE="envchosen")
    gone = operator("logout", "--profile", "envchosen")
    after = operator("hub", "list", ELYSIUM_PROFILE="envchosen")

    assert by_env.code == 0 and gone.code == 0
    assert not profile_file(operator, "envchosen").exists()
    assert after.code == 7
    assert after.err.strip() == (
        "elysium: not logged in (no profile 'envchosen'); run: elysium login --server URL"
        " --ca FILE --profile envchosen"
    )
