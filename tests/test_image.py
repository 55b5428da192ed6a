"""nvlow.engine.image: ImageConfig, engine endpoint choice, API + CLI inspection, PATH merging."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import pytest
from test_engine import IMAGE, FakeEngine, Handler, docker_api, reply, serve, sockdir  # noqa: F401 (fixtures)

from nvlow.errors import EngineError
from nvlow.engine.image import ImageConfig, api_docker_host, config_from_json, docker_globals, inspect_image
from nvlow.plan.plan import DEFAULT_PATH, merge_search_path
from nvlow.plan.plan import LD_LIBRARY_PATH_ADDITIONS as NVIDIA_LD_LIBRARY_PATH_ADDITIONS
from nvlow.plan.plan import PATH_ADDITIONS as NVIDIA_PATH_ADDITIONS


def merge_path_env(image_env, key, additions, default="", *, prepend=()):  # type: ignore[no-untyped-def]
    """The image's value of ``key`` (``default`` when unset) merged by the one implementation in nvlow.plan.plan."""
    current = image_env.get(key)
    return merge_search_path(default if current is None else current, additions, prepend=prepend)

CUDA_IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"
CONFIG = IMAGE["Config"]


# -- ImageConfig ------------------------------------------------------------------------
def test_config_from_json() -> None:
    cfg = config_from_json("img", {"Env": ["A=1", "B=x=y", "EMPTY=", "NOEQUALS", 7, "A=2"],
                                   "Labels": {"z": "last", "a": "first", "n": None}}, "api")
    assert cfg == ImageConfig("img", (("A", "1"), ("B", "x=y"), ("EMPTY", ""), ("A", "2")),
                              (("a", "first"), ("z", "last")), "api")
    assert cfg.env_value("A") == "2"  # the last assignment wins, as in the engine
    assert cfg.env_value("EMPTY") == ""
    assert cfg.env_value("NOEQUALS") is None
    assert cfg.label("a") == "first" and cfg.label("n") is None
    assert cfg.env_dict() == {"A": "2", "B": "x=y", "EMPTY": ""}
    assert cfg.labels_dict() == {"a": "first", "z": "last"}


@pytest.mark.parametrize("config", [None, {}, {"Env": None, "Labels": None}])
def test_config_from_json_empty(config: Any) -> None:
    assert config_from_json("i", config, "cli") == ImageConfig("i", (), (), "cli")


@pytest.mark.parametrize("config, message", [
    ([1], "image i: unexpected .Config JSON (list)"),
    ({"Labels": ["a"]}, "image i: unexpected .Config.Labels JSON"),
])
def test_config_from_json_bad(config: Any, message: str) -> None:
    with pytest.raises(EngineError) as exc:
        config_from_json("i", config, "cli")
    assert str(exc.value) == message


def test_path_value() -> None:
    cfg = config_from_json("i", {"Env": ["PATH=/a::/b:", "LD_LIBRARY_PATH="]}, "api")
    assert cfg.path_value("PATH") == ("/a", "/b")
    assert cfg.path_value("LD_LIBRARY_PATH", "/x") == ()  # set but empty: the image's choice
    assert cfg.path_value("MISSING", DEFAULT_PATH)[:2] == ("/usr/local/sbin", "/usr/local/bin")


# -- which endpoint --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["docker"], {}),
    (["docker", "-D", "--tls", "-l", "debug"], {}),
    (["docker", "-H", "unix:///x"], {"host": "unix:///x"}),
    (["docker", "--host=tcp://h:2375"], {"host": "tcp://h:2375"}),
    (["docker", "--host", "ssh://me@h"], {"host": "ssh://me@h"}),
    (["docker", "-Hunix:///y"], {"host": "unix:///y"}),
    (["docker", "-H=unix:///z"], {"host": "unix:///z"}),
    (["docker", "-c", "rootless"], {"context": "rootless"}),
    (["docker", "--context=default", "--config", "/cfg"], {"context": "default", "config": "/cfg"}),
    (["sudo", "-E", "docker", "-H", "unix:///s"], {"host": "unix:///s"}),
    (["/usr/bin/docker", "--log-level", "warn", "-H", "unix:///p"], {"host": "unix:///p"}),
    (["docker", "-H"], {}),  # dangling value: docker itself will complain
    (["docker", "run", "-H", "x"], {}),  # options after the command are not global
])
def test_docker_globals(argv: List[str], expected: Dict[str, str]) -> None:
    assert docker_globals(argv) == expected


def write_config(tmp_path: Path, doc: Any) -> str:
    d = tmp_path / "dockercfg"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(d)


def test_api_docker_host_precedence(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"currentContext": "rootless"})
    env = {"DOCKER_CONFIG": cfg}
    # -H beats everything
    assert api_docker_host(["docker", "-H", "unix:///h"], "tcp://x:1", env) == (True, "unix:///h")
    assert api_docker_host(["docker", "-H", "tcp://h:1"], None, {}) == (False, None)
    # --context: only "default" is ours
    assert api_docker_host(["docker", "--context", "default"], "unix:///d", env) == (True, "unix:///d")
    assert api_docker_host(["docker", "--context", "default"], "tcp://d:1", env) == (False, None)
    assert api_docker_host(["docker", "--context", "remote"], None, {}) == (False, None)
    # DOCKER_HOST beats DOCKER_CONTEXT and config.json
    assert api_docker_host(["docker"], "unix:///e", env) == (True, "unix:///e")
    assert api_docker_host(["docker"], "ssh://me@h", {}) == (False, None)
    # a current context from config.json or DOCKER_CONTEXT sends us to the CLI
    assert api_docker_host(["docker"], None, env) == (False, None)
    assert api_docker_host(["docker"], None, {"DOCKER_CONTEXT": "other"}) == (False, None)
    assert api_docker_host(["docker"], None, {"DOCKER_CONTEXT": "default"}) == (True, None)
    assert api_docker_host(["docker"], None, {}) == (True, None)


@pytest.mark.parametrize("doc", [{"currentContext": "default"}, {"auths": {}}, {"currentContext": ""}, "{broken",
                                 [1]])
def test_api_docker_host_config_default(tmp_path: Path, doc: Any) -> None:
    assert api_docker_host(["docker"], None, {"DOCKER_CONFIG": write_config(tmp_path, doc)}) == (True, None)


def test_api_docker_host_config_dir_from_option_and_home(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"currentContext": "colima"})
    assert api_docker_host(["docker", "--config", cfg], None, {}) == (False, None)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text('{"currentContext": "colima"}')
    assert api_docker_host(["docker"], None, {"HOME": str(home)}) == (False, None)
    assert api_docker_host(["docker"], None, {"HOME": str(tmp_path / "nohome")}) == (True, None)


# -- inspection through the API ------------------------------------------------------------------
def test_inspect_via_api(serve: Callable[[Handler], FakeEngine]) -> None:  # noqa: F811
    eng = serve(docker_api)
    cfg, reason = inspect_image(CUDA_IMAGE, engine="docker", engine_argv=["docker"],
                                docker_host="unix://" + eng.path, env={})
    assert reason is None and cfg is not None
    assert cfg.source == "api" and cfg.name == CUDA_IMAGE
    assert cfg.env_value("NVIDIA_REQUIRE_CUDA") == "cuda>=12.4"
    assert cfg.label("maintainer") == "NVIDIA CORPORATION"


def test_inspect_via_api_absent(serve: Callable[[Handler], FakeEngine]) -> None:  # noqa: F811
    eng = serve(docker_api)
    assert inspect_image("nosuch", engine="docker", engine_argv=["docker"], docker_host="unix://" + eng.path,
                         env={}) == (None, "image nosuch is not present locally")


def test_inspect_via_h_socket(serve: Callable[[Handler], FakeEngine]) -> None:  # noqa: F811
    eng = serve(docker_api)
    cfg, reason = inspect_image(CUDA_IMAGE, engine="docker", engine_argv=["docker", "-H", "unix://" + eng.path],
                                docker_host="tcp://ignored:2375", env={})
    assert reason is None and cfg is not None and cfg.source == "api"


def test_inspect_null_config_via_api(serve: Callable[[Handler], FakeEngine]) -> None:  # noqa: F811
    eng = serve(lambda path, conn: reply(conn, 200, b'{"Id": "x", "Config": null}'))
    assert inspect_image("x", engine="docker", engine_argv=["docker"], docker_host="unix://" + eng.path,
                         env={}) == (ImageConfig("x", (), (), "api"), None)


# -- inspection through the CLI ------------------------------------------------------------------
FAKE_ENGINE = r"""#!/bin/sh
# fake {name}: records argv, answers 'image inspect'
printf '%s\n' "$@" > "{log}"
for last; do :; done
case "$last" in
  good) printf '%s\n' '{config}' ;;
  listy) printf '%s\n' '[{config}]' ;;
  nullcfg) echo null ;;
  nojson) echo 'template: :1: function "json" not defined' ;;
  slow) sleep 5 ;;
  absent-docker) echo "Error response from daemon: No such image: absent-docker:latest" >&2; exit 1 ;;
  absent-podman) echo "Error: absent-podman: image not known" >&2; exit 125 ;;
  denied) echo "permission denied while trying to connect to the Docker daemon socket" >&2; exit 1 ;;
  *) exit 3 ;;
esac
"""


@pytest.fixture
def fake_engines(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("docker", "podman"):
        script = bindir / name
        script.write_text(FAKE_ENGINE.format(name=name, log=tmp_path / f"{name}.args",
                                             config=json.dumps(CONFIG)))
        script.chmod(0o755)
    return bindir


def cli_inspect(bindir: Path, name: str, engine: str = "docker", prefix: Optional[Sequence[str]] = None,
                timeout: float = 3.0) -> Any:
    argv = list(prefix) if prefix is not None else [str(bindir / engine)]
    # unreachable API socket: the docker path must fall back to its CLI
    return inspect_image(name, engine=engine, engine_argv=argv, docker_host="unix:///nonexistent/docker.sock",
                         timeout=timeout, env={})


@pytest.mark.parametrize("engine", ["docker", "podman"])
@pytest.mark.parametrize("name", ["good", "listy"])
def test_cli_inspect(fake_engines: Path, tmp_path: Path, engine: str, name: str) -> None:
    cfg, reason = cli_inspect(fake_engines, name, engine)
    assert reason is None
    assert cfg == config_from_json(name, CONFIG, "cli")
    assert (tmp_path / f"{engine}.args").read_text().splitlines() == [
        "image", "inspect", "--format", "{{json .Config}}", "--", name]


def test_cli_inspect_keeps_global_options(fake_engines: Path, tmp_path: Path) -> None:
    prefix = [str(fake_engines / "docker"), "-H", "tcp://10.0.0.1:2375", "--tls"]
    cfg, reason = cli_inspect(fake_engines, "good", prefix=prefix)
    assert reason is None and cfg is not None and cfg.source == "cli"
    assert (tmp_path / "docker.args").read_text().splitlines()[:4] == ["-H", "tcp://10.0.0.1:2375", "--tls", "image"]


def test_cli_inspect_null_config(fake_engines: Path) -> None:
    assert cli_inspect(fake_engines, "nullcfg") == (ImageConfig("nullcfg", (), (), "cli"), None)


@pytest.mark.parametrize("engine, name", [("docker", "absent-docker"), ("podman", "absent-podman")])
def test_cli_inspect_absent(fake_engines: Path, engine: str, name: str) -> None:
    assert cli_inspect(fake_engines, name, engine) == (None, f"image {name} is not present locally")


def test_cli_inspect_failures(fake_engines: Path) -> None:
    docker = str(fake_engines / "docker")
    assert cli_inspect(fake_engines, "denied") == (
        None, f"cannot inspect image denied: {docker} image inspect failed: "
              "permission denied while trying to connect to the Docker daemon socket")
    assert cli_inspect(fake_engines, "other") == (
        None, f"cannot inspect image other: {docker} image inspect failed: exit status 3")
    assert cli_inspect(fake_engines, "nojson") == (
        None, f"cannot inspect image nojson: {docker} image inspect printed no JSON config")


def test_cli_inspect_timeout(fake_engines: Path) -> None:
    docker = str(fake_engines / "docker")
    assert cli_inspect(fake_engines, "slow", timeout=0.3) == (
        None, f"cannot inspect image slow: {docker} image inspect did not answer within 0.3 s")


def test_cli_missing_and_not_executable(tmp_path: Path, fake_engines: Path) -> None:
    missing = str(tmp_path / "nowhere" / "docker")
    assert cli_inspect(fake_engines, "x", prefix=[missing]) == (
        None, f"cannot inspect image x: {missing} not found")
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    plain.chmod(stat.S_IRUSR | stat.S_IWUSR)
    cfg, reason = cli_inspect(fake_engines, "x", engine="podman", prefix=[str(plain)])
    if os.geteuid() != 0:
        assert reason == f"cannot inspect image x: {plain} is not executable"
    assert cfg is None and reason is not None


def test_cli_stdin_is_closed(tmp_path: Path) -> None:
    script = tmp_path / "podman"
    script.write_text("#!/bin/sh\nread line && echo '{\"Env\": [\"GOT=stdin\"]}' || echo '{\"Env\": [\"GOT=eof\"]}'\n")
    script.chmod(0o755)
    cfg, reason = inspect_image("i", engine="podman", engine_argv=[str(script)], docker_host=None, timeout=3)
    assert reason is None and cfg is not None and cfg.env_value("GOT") == "eof"


def test_podman_never_uses_the_docker_api(fake_engines: Path, serve: Callable[[Handler], FakeEngine]  # noqa: F811
                                          ) -> None:
    eng = serve(docker_api)
    cfg, reason = inspect_image("good", engine="podman", engine_argv=[str(fake_engines / "podman")],
                                docker_host="unix://" + eng.path, env={})
    assert reason is None and cfg is not None and cfg.source == "cli"
    assert eng.requests == []


def test_context_sends_docker_to_cli(fake_engines: Path, serve: Callable[[Handler], FakeEngine]  # noqa: F811
                                     ) -> None:
    eng = serve(docker_api)
    cfg, reason = inspect_image("good", engine="docker", engine_argv=[str(fake_engines / "docker")],
                                docker_host=None, env={"DOCKER_CONTEXT": "rootless"})
    assert reason is None and cfg is not None and cfg.source == "cli"
    assert eng.requests == []


def test_api_garbage_falls_back_to_cli(fake_engines: Path, serve: Callable[[Handler], FakeEngine]  # noqa: F811
                                       ) -> None:
    eng = serve(lambda path, conn: conn.sendall(b"nonsense\r\n\r\n"))
    cfg, reason = inspect_image("good", engine="docker", engine_argv=[str(fake_engines / "docker")],
                                docker_host="unix://" + eng.path, env={})
    assert reason is None and cfg is not None and cfg.source == "cli"


# -- PATH / LD_LIBRARY_PATH merging ---------------------------------------------------------------------
CUDA_PATH = "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CUDA_LD = "/usr/local/nvidia/lib:/usr/local/nvidia/lib64"


@pytest.mark.parametrize("image_env, key, additions, default, expected", [
    # image has nothing: the default plus the additions
    ({}, "PATH", NVIDIA_PATH_ADDITIONS, DEFAULT_PATH, DEFAULT_PATH + ":/usr/local/nvidia/bin"),
    ({}, "LD_LIBRARY_PATH", NVIDIA_LD_LIBRARY_PATH_ADDITIONS, "", "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"),
    # image has its own PATH: kept, additions appended
    ({"PATH": "/opt/conda/bin:/usr/bin:/bin"}, "PATH", NVIDIA_PATH_ADDITIONS, DEFAULT_PATH,
     "/opt/conda/bin:/usr/bin:/bin:/usr/local/nvidia/bin"),
    # CUDA images already have everything: add nothing
    ({"PATH": CUDA_PATH}, "PATH", NVIDIA_PATH_ADDITIONS, DEFAULT_PATH, None),
    ({"LD_LIBRARY_PATH": CUDA_LD}, "LD_LIBRARY_PATH", NVIDIA_LD_LIBRARY_PATH_ADDITIONS, "", None),
    # image has one of the two library dirs
    ({"LD_LIBRARY_PATH": "/opt/lib:/usr/local/nvidia/lib"}, "LD_LIBRARY_PATH", NVIDIA_LD_LIBRARY_PATH_ADDITIONS, "",
     "/opt/lib:/usr/local/nvidia/lib:/usr/local/nvidia/lib64"),
    # empty entries are dropped, an empty value is not replaced by the default
    ({"LD_LIBRARY_PATH": ":/opt/lib::"}, "LD_LIBRARY_PATH", NVIDIA_LD_LIBRARY_PATH_ADDITIONS, "",
     "/opt/lib:/usr/local/nvidia/lib64:/usr/local/nvidia/lib"),
    ({"PATH": ""}, "PATH", NVIDIA_PATH_ADDITIONS, DEFAULT_PATH, "/usr/local/nvidia/bin"),
    # duplicate additions are added once
    ({}, "X", ["/a", "/a"], "", "/a"),
])
def test_merge_path_env(image_env: Mapping[str, str], key: str, additions: Sequence[str], default: str,
                        expected: Optional[str]) -> None:
    assert merge_path_env(image_env, key, additions, default) == expected


def test_merge_path_env_prepend_compat() -> None:
    assert merge_path_env({"LD_LIBRARY_PATH": CUDA_LD}, "LD_LIBRARY_PATH", NVIDIA_LD_LIBRARY_PATH_ADDITIONS,
                          prepend=["/usr/local/cuda/compat"]) == "/usr/local/cuda/compat:" + CUDA_LD
    assert merge_path_env({"LD_LIBRARY_PATH": "/usr/local/cuda/compat:" + CUDA_LD}, "LD_LIBRARY_PATH",
                          NVIDIA_LD_LIBRARY_PATH_ADDITIONS, prepend=["/usr/local/cuda/compat"]) is None
    assert merge_path_env({}, "LD_LIBRARY_PATH", NVIDIA_LD_LIBRARY_PATH_ADDITIONS,
                          prepend=["/usr/local/cuda/compat"]) == (
        "/usr/local/cuda/compat:/usr/local/nvidia/lib64:/usr/local/nvidia/lib")
