"""`make up` / `make down`: the whole stack on this machine with a live demo tunnel.

up: migrate, PKI, an admin token (0600), gunicorn (TLS, loopback), a control worker, beat and
a hub worker acting in a network namespace; then the hub and its wg0 through the API, a demo
peer enrolled with elysium-client in its own namespace, and a ping through the tunnel.
Every step checks what is already there first, so running `up` again changes nothing; the
database, not the state directory, says what exists (a hub and wg0 there are adopted, a saved
admin token or enrollment it does not know is replaced).

down: stops every process `up` started (by the pid it recorded), takes the tunnels down and
removes the namespaces. The database stays (`make clean` drops it).

Demo namespaces and addresses live only inside namespaces this script creates:
  ely-<name>-ul (bridge 198.18.99.254/24) ── ely-<name>-hub (198.18.99.1)
                                          └─ ely-<name>-peer (198.18.99.11)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psycopg

# Run as a script (`deploy/dev/demo.py up`), so its own folder is first on sys.path: the demo's
# parts (settings, namespaces, processes, provisioning) import by their plain names.
from demo_namespaces import make_namespaces, netns_exists, remove_namespaces
from demo_processes import (
    recorded_processes,
    services_to_stop,
    start_service,
    start_time,
    stop_service,
    wait_gone,
)
from demo_provisioning import (
    Api,
    ensure_admin_token,
    ensure_interface,
    ensure_peer,
    ping_through_tunnel,
    save_admin_token,
)
from demo_settings import (
    HUB_TUNNEL_IP,
    NETWORK,
    UNDERLAY,
    VENV_BIN,
    Demo,
    elysium,
    log,
    run,
)


def up(demo: Demo) -> None:
    started = time.monotonic()
    demo.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    env_file = demo.state / "env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in sorted(demo.env().items())))
    elysium("db", "migrate", demo=demo)
    elysium("pki", "init", "--dir", str(demo.pki), demo=demo)
    if not demo.token_file.exists():
        save_admin_token(demo)
    make_namespaces(demo)
    for service in demo.services:
        if start_service(demo, service):
            log(f"started {service}")
    api = Api(demo)
    api.wait_ready()
    ensure_admin_token(api, demo)
    iface_id = ensure_interface(api, demo)
    ensure_peer(api, demo, iface_id)
    ping_through_tunnel(demo)
    seconds = time.monotonic() - started
    replicas = [f"{s} 127.0.0.1:{demo.replica_port(s)}" for s in demo.services if "api-" in s]
    if replicas:
        log(
            f"the API is {', '.join(replicas)} behind HAProxy on {demo.url}"
            f" ({demo.state}/haproxy.cfg)"
        )
    print(
        f"""
Elysium is up ({seconds:.1f} s); the demo peer pings {HUB_TUNNEL_IP} through wg0.

  API            {demo.url}   (docs: {demo.url}/docs, OpenAPI: {demo.url}/openapi.json)
  dashboard      {demo.url}/ui/   sign in by pasting the admin token: cat {demo.token_file}
                 (the browser must trust {demo.pki / "ca.pem"}, or accept the certificate once)
  CA             {demo.pki / "ca.pem"}
  admin token    {demo.token_file}
  settings       source {env_file}
  logs           {demo.state / "logs"}/{{api,control-worker,beat,hub-worker}}.log
  hub            {demo.hub}: wg0 {NETWORK} in namespace {demo.ns("hub")} ({UNDERLAY}.1:51820)
  demo peer      namespace {demo.ns("peer")}, client state {demo.state / "client"}

Try:
  {VENV_BIN / "elysium"} login --server {demo.url} --ca {demo.pki / "ca.pem"} \\
       --token - < {demo.token_file}
  {VENV_BIN / "elysium"} peer list
  curl --cacert {demo.pki / "ca.pem"} -H "Authorization: Bearer $(cat {demo.token_file})" \\
       {demo.url}/v1/peers
  {VENV_BIN / "elysium-client"} status --state-dir {demo.state / "client"}
  ip netns exec {demo.ns("peer")} ping -c3 {HUB_TUNNEL_IP}
  make down
""",
        flush=True,
    )


def down(demo: Demo) -> None:
    """Returns only when nothing of the demo is left: every process it recorded has exited
    (killed by pid if need be) and its namespaces are gone; else exits non-zero saying what."""
    ours = recorded_processes(demo)  # before the steps below remove their pid files
    client_state = demo.state / "client"
    if (client_state / "client.json").exists():
        run(str(VENV_BIN / "elysium-client"), "down", "--state-dir", str(client_state), check=False)
    for service in services_to_stop(demo):
        stop_service(demo, service)
    remove_namespaces(demo)
    still = [pid for pid, started in ours.items() if start_time(pid) == started]
    for pid in still:  # e.g. a device process outside the namespaces, or one still exiting
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = wait_gone(still)
    if left:
        raise SystemExit(f"down: pid {', '.join(map(str, left))} of the demo does not exit")
    namespaces = [demo.ns(role) for role in ("peer", "hub", "ul") if netns_exists(demo.ns(role))]
    if namespaces:
        raise SystemExit(f"down: namespaces {', '.join(namespaces)} could not be removed")
    print(f"down: stopped the demo's processes and removed its namespaces ({demo.name})")


def clean(demo: Demo) -> None:
    """down, then forget the demo: its state directory and the database's contents."""
    down(demo)
    url = demo.env().get(
        "ELYSIUM_DATABASE_URL", "postgresql://elysium:elysium@127.0.0.1:5432/elysium"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    subprocess.run(["rm", "-rf", "--", str(demo.state)], check=False)
    print(f"clean: dropped the schema of {url.rsplit('@', 1)[-1]} and removed {demo.state}")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    demo = Demo.from_env()
    {"up": up, "down": down, "clean": clean}[command](demo)


if __name__ == "__main__":
    main()
