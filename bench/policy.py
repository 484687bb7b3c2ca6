"""Policy benchmark: loading one interface's compiled policy (10,000 peers, 100 tags, 1,000
rules) against the same policy written flat, and a peer joining its tag sets.

Run as root: ``.venv/bin/python -m bench.policy``. Everything happens inside one throwaway
network namespace; results go to ``bench/results/policy.json``.

Each peer has one tag (100 peers a tag); rule ``j`` lets tag ``t{j % 100}`` reach a service
network on one port (tcp or udp, accept or drop). Flat is the iptables way: one rule per
source peer address per policy rule (100,000 rules), no sets, loaded with ``nft -f`` into a
table of its own. ``policy_apply_10k_s`` is :meth:`Firewall.apply`, the listing it compares
before and after included. A join is :meth:`Firewall.update_members` adding one new peer's
address to its tag set; it is measured through libnftables and through the ``nft`` program.

``…_with_foreign`` are the same load and join (the faster backend) while other owners' tables
sit in the namespace: the flat ruleset's 100,000 rules, as Docker, firewalld or kube-proxy keep
theirs, and a blocklist with an interval set of 50,000 ranges. Elysium's commands name its own
table, so nft should not fetch the others: goal at most 1.5 times the figure without them, in
the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import time

from bench.scaffold import percentile, size, throwaway_namespace, write_result
from elysium.policy import PeerMembership, compile_policy, members_for, parse_policy
from workers.firewall import Firewall, InterfaceFirewall

PEERS = size(10_000, 200)
TAGS = size(100, 10)
RULES = size(1_000, 20)
JOINS = size(300, 5)
BLOCKLIST = size(50_000, 500)
REPEAT = size(3, 1)


def address(i: int) -> str:
    i += 2  # past the hub's 10.64.0.1
    return f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def rule(j: int) -> dict[str, object]:
    return {
        "from": f"tag:t{j % TAGS}",
        "to": f"172.16.{j % 256}.0/24",
        "proto": "tcp" if j % 2 else "udp",
        "ports": [str(1000 + j)],
        "action": "drop" if j % 3 == 0 else "accept",
    }


def interface(peers: int) -> InterfaceFirewall:
    body = {"default": "drop", "rules": [rule(j) for j in range(RULES)]}
    policy = parse_policy(body, known_tags={f"t{t}" for t in range(TAGS)}, known_peers=set())
    members = members_for(
        "wg0",
        (PeerMembership(i, (f"t{i % TAGS}",), (address(i),)) for i in range(peers)),
        [],
        ["10.64.0.1/16"],
    )
    return InterfaceFirewall("wg0", compile_policy("wg0", policy), members, ("10.64.0.0/16",))


def flat_ruleset(peers: int) -> str:
    out = ["add table inet flat", "delete table inet flat", "table inet flat {", "chain wg0 {"]
    out.append("type filter hook forward priority filter; policy accept;")
    out.append("ct state established,related accept")
    for j in range(RULES):
        r = rule(j)
        tail = f"ip daddr {r['to']} {r['proto']} dport {1000 + j} counter {r['action']}"
        out.extend(f"ip saddr {address(i)} {tail}" for i in range(j % TAGS, peers, TAGS))
    out += ["counter drop", "}", "}"]
    return "\n".join(out) + "\n"


def blocklist(ranges: int) -> str:
    """Another owner's interval set (a blocklist, as firewalld or CrowdSec keep one)."""
    elements = ", ".join(f"100.{i // 256 % 256}.{i % 256}.0/25" for i in range(ranges))
    body = f"set ranges {{ type ipv4_addr; flags interval; elements = {{ {elements} }}\n}}"
    return f"table inet blocklist {{\n{body}\n}}\n"


def nft_file(ns: str, text: str) -> None:
    cmd = ["ip", "netns", "exec", ns, "nft", "-f", "-"]
    subprocess.run(cmd, input=text, text=True, check=True, capture_output=True)


def apply_figures(ns: str) -> dict[str, float]:
    """Ours alone (each load on top of its own previous one), then flat the same way; the
    flat table is left loaded for the measurements with a foreign table."""
    desired = [interface(PEERS)]
    flat = flat_ruleset(PEERS)
    ours: list[float] = []
    theirs: list[float] = []
    with Firewall(ns) as fw:
        for _ in range(REPEAT):
            start = time.perf_counter()
            fw.apply(desired)
            ours.append(time.perf_counter() - start)
        fw.remove()
    for _ in range(REPEAT):
        start = time.perf_counter()
        nft_file(ns, flat)
        theirs.append(time.perf_counter() - start)
    return {
        "policy_apply_10k_s": round(statistics.median(ours), 3),
        "flat_apply_10k_s": round(statistics.median(theirs), 3),
        "flat_rules": flat.count("\nip saddr "),
    }


def apply_with_foreign_s(ns: str) -> float:
    """Median :meth:`Firewall.apply` (first load, then reloads) while the flat table is loaded."""
    desired = [interface(PEERS)]
    samples: list[float] = []
    with Firewall(ns) as fw:
        for _ in range(REPEAT):
            start = time.perf_counter()
            fw.apply(desired)
            samples.append(time.perf_counter() - start)
        fw.remove()
    return round(statistics.median(samples), 3)


def join_p50_ms(ns: str, peers: int, backend: str) -> float:
    samples: list[float] = []
    with Firewall(ns, backend=backend) as fw:
        fw.apply([interface(peers)])
        for k in range(JOINS):
            i = PEERS + 1000 + k
            add = {f"wg0_t_t{i % TAGS}_4": [address(i)]}
            start = time.perf_counter()
            fw.update_members(add, {})
            samples.append(time.perf_counter() - start)
        fw.remove()
    return round(percentile(samples, 0.5) * 1000, 3)


def main() -> None:
    with throwaway_namespace() as ns:
        figures: dict[str, object] = {"setup": {"peers": PEERS, "tags": TAGS, "rules": RULES}}
        # Alone first (joins, then loads); then the same with the flat table left in place.
        joins = {
            backend: {
                "p50_ms_10k": join_p50_ms(ns, PEERS, backend),
                "p50_ms_100": join_p50_ms(ns, 100, backend),
            }
            for backend in ("libnftables", "nft")
        }
        best = min(joins, key=lambda b: joins[b]["p50_ms_10k"])
        figures.update(apply_figures(ns))  # leaves the flat table: another owner's, from here
        nft_file(ns, blocklist(BLOCKLIST))
        foreign_apply = apply_with_foreign_s(ns)
        foreign_join = join_p50_ms(ns, PEERS, best)
        nft_file(ns, "add table inet flat\ndelete table inet flat\n")
        nft_file(ns, "add table inet blocklist\ndelete table inet blocklist\n")
    alone_apply = float(figures["policy_apply_10k_s"])  # type: ignore[arg-type]
    figures.update(
        {
            "peer_join_backend": best,
            "peer_join_p50_ms": joins[best]["p50_ms_10k"],
            "peer_join_p50_ms_100": joins[best]["p50_ms_100"],
            "peer_join_ratio_10k_vs_100": round(
                joins[best]["p50_ms_10k"] / joins[best]["p50_ms_100"], 3
            ),
            "peer_join_by_backend": joins,
            "policy_apply_10k_with_foreign_s": foreign_apply,
            "peer_join_p50_ms_with_foreign": foreign_join,
            "goals": {
                "policy_apply_10k_s": figures["flat_apply_10k_s"],
                "peer_join_p50_ms": 5,
                "peer_join_ratio_10k_vs_100": 1.5,
                "policy_apply_10k_with_foreign_s": round(1.5 * alone_apply, 3),
                "peer_join_p50_ms_with_foreign": round(1.5 * joins[best]["p50_ms_10k"], 3),
            },
        }
    )
    write_result("policy", figures)


if __name__ == "__main__":
    main()
