"""Enclaves come and go at runtime: a fleet file that changes, a DNS name whose addresses change."""

from __future__ import annotations

import os

import pytest
from sealgate.gateway import Discovery
from sealgate.gateway.discovery import DiscoveryError

from ..servers import ServerThread, free_port


def _ids(http, url):
    return sorted(e["id"] for e in http.get(url + "/.well-known/sealgate-fleet").json()["enclaves"])


def test_fleet_file_members_added_and_removed_without_restart(fleet, http, tmp_path):
    a, b = fleet.enclave(), fleet.enclave()
    path = tmp_path / "fleet.toml"
    path.write_text(f'enclaves = ["{a.url}"]\n')
    gw = fleet.gateway(Discovery(file=path))
    assert len(_ids(http, gw.url)) == 1
    path.write_text(f'enclaves = ["{a.url}", "{b.url}"]\n')
    os.utime(path, (1, 1))  # a different mtime, whatever the clock's resolution
    gw.refresh()
    assert len(_ids(http, gw.url)) == 2
    path.write_text(f'enclaves = ["{b.url}"]\n')
    os.utime(path, (2, 2))
    gw.refresh()
    assert len(_ids(http, gw.url)) == 1
    path.write_text("enclaves = [not toml")
    os.utime(path, (3, 3))
    gw.refresh()  # a broken file keeps the last good member list
    assert len(_ids(http, gw.url)) == 1


def test_dns_name_whose_addresses_change(fleet, http):
    port = free_port()
    servers = {}
    for host in ("127.0.0.2", "127.0.0.3"):
        built_server = fleet.enclave()  # one in-thread enclave per loopback address below
        built_server.stop()
        fleet.enclaves.remove(built_server)
        server = ServerThread(fleet.built[-1].app, host=host, port=port).start()
        fleet.enclaves.append(server)
        servers[host] = server
    answers = {"enclaves.sealgate.svc": ["127.0.0.2"]}

    async def resolver(name: str, _port: int) -> list[str]:
        if name not in answers:
            raise OSError("NXDOMAIN")
        return answers[name]

    gw = fleet.gateway(Discovery(dns=[f"enclaves.sealgate.svc:{port}"], resolver=resolver))
    assert len(_ids(http, gw.url)) == 1
    answers["enclaves.sealgate.svc"] = ["127.0.0.2", "127.0.0.3"]
    gw.refresh()
    assert len(_ids(http, gw.url)) == 2
    answers["enclaves.sealgate.svc"] = ["127.0.0.3"]
    gw.refresh()
    assert len(_ids(http, gw.url)) == 1
    del answers["enclaves.sealgate.svc"]
    gw.refresh()  # a failed lookup keeps the last answer rather than emptying the fleet
    assert len(_ids(http, gw.url)) == 1


def test_bad_discovery_configuration_is_a_typed_error():
    with pytest.raises(DiscoveryError):
        Discovery(static=["ftp://x"])
    with pytest.raises(DiscoveryError):
        Discovery(dns=["name:port"])
