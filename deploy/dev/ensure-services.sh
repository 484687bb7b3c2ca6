#!/usr/bin/env bash
# Install and start what Elysium needs on a Debian host, idempotently and quietly.
# Used by `make deps`; safe to run again while everything is up.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v wireguard-go >/dev/null || need_apt+=(wireguard-go)
command -v wg >/dev/null || need_apt+=(wireguard-tools)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ping >/dev/null || need_apt+=(iputils-ping)
command -v nft >/dev/null || need_apt+=(nftables) # nft and libnftables1 (the hub firewall)
command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
# High availability (README "High availability"): API replicas behind HAProxy, Redis Sentinel.
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v redis-sentinel >/dev/null || need_apt+=(redis-sentinel)
# The dashboard's browser tests drive Debian's headless Chromium through chromedriver.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# bench/direct.py measures direct and relayed throughput with iperf3.
command -v iperf3 >/dev/null || need_apt+=(iperf3)
# The single sign-on tests run a real OpenID provider (oidc-provider) on Node.
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
  echo "deps: installing ${need_apt[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# PostgreSQL 15: start the cluster if it is down, then make the role and database.
PG_VERSION="${PG_VERSION:-15}"
# Debian's 100 connections are too few here: every API worker keeps a pool (up to
# ELYSIUM_DB_POOL_MAX) and a listener, and the tests and benchmarks run several servers,
# replicas and hub workers beside a 50-connection concurrency test. Raised once; a running
# cluster is restarted for it (the setting takes effect only at start).
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-300}"
pg_restart=0
if (($(pg_conftool -s "$PG_VERSION" main show max_connections 2>/dev/null || echo 100) < PG_MAX_CONNECTIONS)); then
  echo "deps: PostgreSQL $PG_VERSION max_connections -> $PG_MAX_CONNECTIONS"
  pg_conftool "$PG_VERSION" main set max_connections "$PG_MAX_CONNECTIONS"
  pg_restart=1
fi
if pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" && $4=="online" {found=1} END {exit !found}'; then
  if ((pg_restart)); then pg_ctlcluster "$PG_VERSION" main restart; fi
else
  echo "deps: starting PostgreSQL $PG_VERSION"
  pg_ctlcluster "$PG_VERSION" main start
fi
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.1; done
psql_su() { (cd / && runuser -u postgres -- psql -XAtq "$@"); }
if [[ "$(psql_su -c "select 1 from pg_roles where rolname='elysium'")" != 1 ]]; then
  psql_su -c "create role elysium login createdb password 'elysium'"
fi
if [[ "$(psql_su -c "select 1 from pg_database where datname='elysium'")" != 1 ]]; then
  psql_su -c "create database elysium owner elysium"
fi

# Redis on loopback, no persistence (the broker's state is rebuilt by the job janitor).
REDIS_PORT="${REDIS_PORT:-6379}"
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "deps: starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --logfile /var/log/elysium-redis.log >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
