"""The HAProxy configuration Elysium renders is one HAProxy itself accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from elysium import pki
from elysium.haproxy import haproxy_config


def test_the_rendered_configuration_passes_haproxys_own_check(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    pki.write_certificate(ca, pki.create_ca()[0])
    config = tmp_path / "haproxy.cfg"
    replicas = ["127.0.0.1:9001", "127.0.0.1:9002"]
    config.write_text(haproxy_config("127.0.0.1:8443", replicas, ca))

    done = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    text = config.read_text()
    assert "mode tcp" in text  # TLS and client certificates end at gunicorn
    assert f"verify required ca-file {ca}" in text
    assert text.count("server api2 127.0.0.1:9002") == 2  # in the ready and the alive backend
