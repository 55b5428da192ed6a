"""nvlow serve's REST API on simulated hosts: v1.0 compatibility, v2, errors, robustness, driver changes."""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import zlib

import pytest

from nvlow.errors import UsageError
from nvlow.serve import server as srvmod
from test_serve_support import get, get_json, raw, running_server

DGX_DEVICES = " ".join(f"--device=/dev/nvidia{i}" for i in range(8))
CONTROL = "--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia-uvm-tools"
VOLUME = "--volume-driver=nvidia-docker --volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro"


def container_view(text):
    """Drop the host side of ``--device=HOST:CONTAINER`` (the simulated root prefixes host paths)."""
    return re.sub(r"--device=[^ :]+:", "--device=", text)


def container_devices(devices):
    return [d.rsplit(":", 1)[-1] for d in devices]


@pytest.fixture(scope="module")
def dgx(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("dgx")) as (server, state, log):
        yield server


@pytest.mark.parametrize("prefix", ["", "/v1.0"])
def test_docker_cli_all(dgx, prefix):
    status, headers, body = get(dgx, prefix + "/docker/cli")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert container_view(body.decode()) == f"{VOLUME} {CONTROL} {DGX_DEVICES}"  # one line, no newline
    assert re.search(r"--device=\S+/root-dgx-a100/dev/nvidia0:/dev/nvidia0( |$)", body.decode())


@pytest.mark.parametrize("query,devices", [
    ("?dev=1+0&vol=nvidia_driver", "/dev/nvidia0 /dev/nvidia1"),  # index order, not request order
    ("?dev=*", " ".join(f"/dev/nvidia{i}" for i in range(8))),
    ("?dev=&vol=", " ".join(f"/dev/nvidia{i}" for i in range(8))),
    ("?dev=3", "/dev/nvidia3"),
    ("?dev=0000:0f:00.0", "/dev/nvidia1"),  # nvlow selection syntax per token
])
def test_docker_cli_selection(dgx, query, devices):
    status, _h, body = get(dgx, "/docker/cli" + query)
    want = f"{VOLUME} {CONTROL} " + " ".join(f"--device={d}" for d in devices.split())
    assert (status, container_view(body.decode())) == (200, want)


def test_docker_cli_uuid_prefix(dgx):
    _s, info = get_json(dgx, "/gpu/info/json")
    uuid = info["Devices"][5]["UUID"]
    status, doc = get_json(dgx, f"/docker/cli/json?dev={uuid[:12]}")
    assert status == 200
    doc["Devices"] = container_devices(doc["Devices"])
    assert doc == {"VolumeDriver": "nvidia-docker", "Volumes": ["nvidia_driver_550.54.15:/usr/local/nvidia:ro"],
                   "Devices": ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia5"]}


@pytest.mark.parametrize("path,message", [
    ("/docker/cli?dev=9", "invalid device: 9"),
    ("/docker/cli?dev=0+banana", "invalid device: banana"),
    ("/docker/cli/json?dev=GPU-zzzz", "invalid device: GPU-zzzz"),
    ("/v1.0/docker/cli?vol=nvidia_foo", "invalid volume: nvidia_foo"),
    ("/docker/cli?dev=0++1", "invalid device: "),
])
def test_docker_cli_errors_are_400(dgx, path, message):
    status, headers, body = get(dgx, path)
    assert (status, body.decode()) == (400, message + "\n")
    assert headers["content-type"].startswith("text/plain")


def test_gpu_info_json_and_text(dgx):
    status, headers, body = get(dgx, "/v1.0/gpu/info/json")
    assert status == 200 and headers["content-type"] == "application/json" and body.endswith(b"}\n")
    doc = json.loads(body)
    assert doc["Version"] == {"Driver": "550.54.15", "CUDA": "12.4"}
    assert [d["Path"] for d in doc["Devices"]] == [f"/dev/nvidia{i}" for i in range(8)]
    d0 = doc["Devices"][0]
    assert (d0["Model"], d0["Family"], d0["Arch"], d0["Cores"], d0["Power"], d0["PCI"]["BusID"],
            d0["PCI"]["Bandwidth"], d0["Memory"]["Global"]) == (
        "NVIDIA A100-SXM4-40GB", "Ampere", "8.0", 108 * 64, 400, "00000000:07:00.0", 31504, 40960)
    _s, _h, text = get(dgx, "/gpu/info")
    lines = text.decode().splitlines()
    assert lines[1:3] == ["Driver version:          550.54.15", "Supported CUDA version:  12.4"]
    assert "  Model:         NVIDIA A100-SXM4-40GB" in lines and lines.count("  P2P Available") == 8
    assert "    00000000:0F:00.0 - Multiple PCI switches" in lines  # the DGX preset's peers (1.0's link names)


def test_gpu_status(dgx):
    status, doc = get_json(dgx, "/gpu/status/json")
    assert status == 200 and len(doc["Devices"]) == 8
    assert doc["Devices"][0]["Temperature"] == 33 and doc["Devices"][0]["Power"] == 61
    _s, _h, text = get(dgx, "/v1.0/gpu/status")
    assert text.decode().count("  Power:        61 / 400 W\n") == 8


def test_mesos_cli(dgx):
    _s, _h, info = get(dgx, "/gpu/info/json")
    status, _h, body = get(dgx, "/mesos/cli")
    attr, res = body.decode().split(" ")
    assert attr.startswith("--attributes=gpus:") and "=" not in attr[len("--attributes=gpus:"):]
    b64 = attr[len("--attributes=gpus:"):]
    assert zlib.decompress(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))) == info
    uuids = [d["UUID"] for d in json.loads(info)["Devices"]]
    assert res == "--resources=gpus:{" + ",".join(uuids) + "}"


def test_v2_args_is_the_cli_document(dgx):
    status, doc = get_json(dgx, "/v2/args?gpus=1,3&capabilities=utility")
    assert status == 200 and doc["schema_version"] == 1
    assert doc["selection"]["gpus"] == [1, 3] and doc["capabilities"] == ["utility"]
    assert [d["container_path"] for d in doc["devices"]] == ["/dev/nvidiactl", "/dev/nvidia1", "/dev/nvidia3"]
    assert [a.rsplit(":", 1)[-1] for a in doc["args"] if a.startswith("--device")] == [
        "/dev/nvidiactl", "/dev/nvidia1", "/dev/nvidia3"]
    assert any(a.startswith("--volume=") and a.endswith("/usr/local/nvidia/bin/nvidia-smi:ro")
               for a in doc["args"])
    assert doc["simulated"] == "dgx-a100"


def test_v2_args_nv_gpu_and_plugin_mode(dgx):
    status, doc = get_json(dgx, "/v2/args?nv_gpu=2+0&driver_files=plugin")
    assert status == 200 and doc["selection"]["gpus"] == [0, 2]
    assert "--volume-driver=nvidia-docker" in doc["args"]
    assert "--volume=nvidia_driver_550.54.15:/usr/local/nvidia:ro" in doc["args"]


@pytest.mark.parametrize("path,code,needle", [
    ("/v2/args?gpus=12", 400, "unknown GPU index: 12"),
    ("/v2/args?gpus=banana", 400, "invalid GPU identifier"),
    ("/v2/args?capabilities=nonsense", 400, "nonsense"),
    ("/v2/args?driver_files=hardlink", 400, "invalid driver-files mode"),
    ("/v2/args?gpu=1", 400, "unknown query parameter: gpu"),
    ("/v2/info?x=1", 400, "unknown query parameter: x"),
])
def test_v2_errors(dgx, path, code, needle):
    status, doc = get_json(dgx, path)
    assert status == code and needle in doc["error"]


def test_v2_info_status_healthz(dgx):
    _s, info = get_json(dgx, "/v2/info")
    assert info["driver_version"] == "550.54.15" and len(info["gpus"]) == 8 and info["schema_version"] == 1
    _s, st = get_json(dgx, "/v2/status")
    assert [g["temperature_c"] for g in st["gpus"]] == [33] * 8
    status, health = get_json(dgx, "/healthz")
    assert status == 200 and health["status"] == "ok" and health["gpus"] == 8


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"])
def test_other_methods_get_405(dgx, method):
    status, headers, _body = get(dgx, "/docker/cli", method=method, body=b"" if method != "HEAD" else None)
    assert status == 405 and headers["allow"] == "GET"


@pytest.mark.parametrize("path", ["/", "/gpu", "/docker/cli/", "/v1.1/docker/cli", "/v2/nothing", "/../etc/passwd"])
def test_unknown_paths_404(dgx, path):
    status, _h, body = get(dgx, path)
    assert (status, body) == (404, b"404 page not found\n")


@pytest.mark.parametrize("data,code", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /docker/cli HTTP/9.9\r\n\r\n", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: -4\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431),
])
def test_malformed_requests_get_4xx_and_server_survives(dgx, data, code):
    answer = raw(dgx, data)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == str(code).encode()
    assert get(dgx, "/healthz")[0] == 200


def test_slow_client_is_dropped(tmp_path):
    with running_server(tmp_path, client_timeout=0.3) as (server, _state, _log):
        host, port = server.address
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # never finishes the request
            assert s.recv(100) == b""  # the server closed the connection
        assert get(server, "/healthz")[0] == 200


def test_handler_error_is_500_and_logged(tmp_path, monkeypatch):
    def boom(state, request):
        raise RuntimeError("kaboom")

    monkeypatch.setitem(srvmod.ROUTES, "/gpu/info", boom)
    with running_server(tmp_path) as (server, state, log):
        status, _h, body = get(server, "/gpu/info")
        assert (status, body) == (500, b"internal error, check logs for details\n")
        assert any("RuntimeError: kaboom" in line for line in log.lines)
        assert get(server, "/docker/cli")[0] == 200


def test_verbose_logs_one_line_per_request(tmp_path):
    with running_server(tmp_path, verbose=True) as (server, _state, log):
        get(server, "/healthz")
        get(server, "/docker/cli?dev=42")
    lines = [line for line in log.lines if '"GET ' in line]
    assert len(lines) == 2 and '"GET /healthz HTTP/1.1" 200' in lines[0] and '" 400 ' in lines[1]


def test_connection_cap_answers_503(tmp_path):
    with running_server(tmp_path, max_connections=1, client_timeout=5) as (server, _state, _log):
        host, port = server.address
        with socket.create_connection((host, port), timeout=10) as held:
            held.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 200 " in held.recv(4096)  # keep-alive: the slot stays taken
            answer = raw(server, b"GET /healthz HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503")


def test_keep_alive_serves_several_requests(dgx):
    host, port = dgx.address
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        for _ in range(3):
            s.sendall(b"GET /docker/cli?dev=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert f.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while True:
                line = f.readline()
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line in (b"\r\n", b""):
                    break
            assert f.read(length).endswith(b":/dev/nvidia0")


def test_driver_change_triggers_rediscovery(tmp_path):
    with running_server(tmp_path) as (server, state, _log):
        assert get(server, "/docker/cli?dev=0")[2].decode().startswith(VOLUME)
        assert state.cache.discoveries == 1
        get(server, "/docker/cli")
        assert state.cache.discoveries == 1  # cached
        path = state.cache.root.host("/proc/driver/nvidia/version")
        with open(path) as fh:
            text = fh.read()
        with open(path, "w") as fh:
            fh.write(text.replace("550.54.15", "555.42.02"))
        body = get(server, "/docker/cli?dev=0")[2].decode()
        assert "--volume=nvidia_driver_555.42.02:/usr/local/nvidia:ro" in body
        assert state.cache.discoveries == 2
        assert get_json(server, "/gpu/info/json")[1]["Version"]["Driver"] == "555.42.02"


def test_no_driver_host_reports_errors_and_keeps_serving(tmp_path):
    with running_server(tmp_path, "no-driver") as (server, _state, log):
        status, doc = get_json(server, "/healthz")
        assert status == 503 and doc["status"] == "error" and doc["error"]
        status, _h, body = get(server, "/docker/cli")
        assert status == 500 and body.endswith(b"\n") and b"\n" not in body[:-1]
        status, doc = get_json(server, "/v2/args")
        assert status == 500 and doc["error"]


def test_zero_gpus(tmp_path):
    with running_server(tmp_path, "no-gpu") as (server, _state, _log):
        status, _h, body = get(server, "/docker/cli")
        assert status == 200 and body.decode().startswith("--volume-driver=nvidia-docker --volume=nvidia_driver_")
        assert "--device=/dev/nvidia0" not in body.decode()
        assert get_json(server, "/gpu/info/json")[1]["Devices"] == []


def test_mig_host_dev_tokens(tmp_path):
    with running_server(tmp_path, "dgx-h100-mig") as (server, _state, _log):
        status, doc = get_json(server, "/docker/cli/json?dev=0:0")
        assert status == 200
        devices = container_devices(doc["Devices"])
        assert any(d.startswith("/dev/nvidia-caps/nvidia-cap") for d in devices)
        assert "/dev/nvidia0" in devices


def test_parse_listen_and_loopback():
    assert srvmod.parse_listen("127.0.0.1:3476") == ("127.0.0.1", 3476)
    assert srvmod.parse_listen("[::1]:80") == ("::1", 80)
    assert srvmod.parse_listen(":3476") == ("0.0.0.0", 3476)
    for bad in ("3476", "host:port", "h:70000"):
        with pytest.raises(UsageError, match="--listen"):
            srvmod.parse_listen(bad)
    assert srvmod.is_loopback("localhost") and srvmod.is_loopback("127.0.0.2") and srvmod.is_loopback("::1")
    assert not srvmod.is_loopback("0.0.0.0") and not srvmod.is_loopback("10.0.0.1")


def test_listen_conflict_is_a_clear_error(tmp_path):
    from nvlow.errors import UsageError

    with running_server(tmp_path) as (server, state, _log):
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1:"):
            srvmod.NvlowServer(state, server.address)


# -- the version text read on every request (nvlow.serve.cache._VersionFile) ---------------------------
def _version_cache(tmp_path):
    from nvlow.host.root import HostRoot
    from nvlow.serve.cache import DiscoveryCache

    d = tmp_path / "proc" / "driver" / "nvidia"
    d.mkdir(parents=True)
    (d / "version").write_text("NVRM version: 550.54.15\n")
    return DiscoveryCache(HostRoot(str(tmp_path)), None, load_uvm=False), d / "version"


def _rewrite(path, text):
    path.write_text(text)


def _rename_over(path, text):
    tmp = path.with_name("version.new")
    tmp.write_text(text)
    os.rename(tmp, path)


@pytest.mark.parametrize("change", [_rewrite, _rename_over], ids=["rewritten in place", "replaced by rename"])
def test_version_text_follows_the_file(tmp_path, change):
    cache, path = _version_cache(tmp_path)
    assert cache.version_key() == "NVRM version: 550.54.15\n"
    assert cache.version_key() == "NVRM version: 550.54.15\n"  # through the kept descriptor
    change(path, "NVRM version: 555.42.02\n")
    assert cache.version_key() == "NVRM version: 555.42.02\n"
    path.unlink()
    assert cache.version_key() is None
    path.write_text("NVRM version: 560.28.03\n")
    assert cache.version_key() == "NVRM version: 560.28.03\n"
    cache.close()
    assert cache.version_key() == "NVRM version: 560.28.03\n"  # reopened after close
    cache.close()


def test_version_text_of_a_fifo_is_an_error_not_a_hang(tmp_path):
    from nvlow.errors import HostError

    cache, path = _version_cache(tmp_path)
    assert cache.version_key() is not None
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(HostError, match="is a FIFO, not a regular file"):
        cache.version_key()
    cache.close()


def test_version_text_is_reread_when_the_kept_descriptor_fails(tmp_path):
    """A procfs entry removed by unloading the module fails reads through old descriptors (EIO):
    stood in for here by closing the kept descriptor under the reader."""
    cache, path = _version_cache(tmp_path)
    assert cache.version_key() == "NVRM version: 550.54.15\n"
    os.close(cache._version._fd)
    path.write_text("NVRM version: 555.42.02\n")
    try:
        assert cache.version_key() == "NVRM version: 555.42.02\n"
    finally:
        cache.close()
