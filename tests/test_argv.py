"""Table-driven tests of the engine argv parser and injector (docker-cli-flags.md §§4-6)."""
from __future__ import annotations

import shlex
from typing import List, Optional, Tuple

import pytest

from nvlow.engine.argv import EngineCommand, ParsedOption, inject, parse_engine_argv, split_engine_command
from nvlow.errors import UsageError

Opts = List[Tuple[str, Optional[str]]]


def parse(line: str, **kw: object) -> EngineCommand:
    return parse_engine_argv(shlex.split(line), **kw)  # type: ignore[arg-type]


def opts(cmd: EngineCommand) -> Opts:
    return [(o.name, o.value) for o in cmd.options]


# line, image, image_index, insert_index, options
DOCKER_CASES = [
    ("docker run -v /a:/b img", "img", 4, 4, [("volume", "/a:/b")]),                # nvidia-docker #46
    ("docker run -p 30000:30000 img", "img", 4, 4, [("publish", "30000:30000")]),   # #52
    ("docker run --user 1000:1000 img", "img", 4, 4, [("user", "1000:1000")]),      # #917
    ("docker run -it --rm -- img cmd", "img", 5, 4,                                 # #330
     [("interactive", None), ("tty", None), ("rm", None)]),
    ("docker run -itp8080:80 img", "img", 3, 3, [("interactive", None), ("tty", None), ("publish", "8080:80")]),
    ("docker run --sig-proxy=false img", "img", 3, 3, [("sig-proxy", "false")]),
    ("docker run -e -x img", "img", 4, 4, [("env", "-x")]),
    ("docker run img -v x", "img", 2, 2, []),
    ("docker -D run img", "img", 3, 3, []),
    ("docker -H unix:///s run img", "img", 4, 4, []),
    ("docker -l debug run img", "img", 4, 4, []),
    ("docker run --rm false", "false", 3, 3, [("rm", None)]),
    ("docker run --rm=false img", "img", 3, 3, [("rm", "false")]),
    ("docker run -e=A=B img", "img", 3, 3, [("env", "A=B")]),
    ("docker run -eFOO=1 img", "img", 3, 3, [("env", "FOO=1")]),
    ("docker run -p=80:80 img", "img", 3, 3, [("publish", "80:80")]),
    ("docker run -d=false img", "img", 3, 3, [("detach", "false")]),
    ("docker run -it=false img", "img", 3, 3, [("interactive", None), ("tty", "false")]),
    ("docker run -itv /a:/b img", "img", 4, 4, [("interactive", None), ("tty", None), ("volume", "/a:/b")]),
    ("docker run -v/a:/b img", "img", 3, 3, [("volume", "/a:/b")]),
    ("docker run --name=x img", "img", 3, 3, [("name", "x")]),
    ("docker run --name= img", "img", 3, 3, [("name", "")]),
    ("docker run --name -- img", "img", 4, 4, [("name", "--")]),
    ("docker run --entrypoint '' img", "img", 4, 4, [("entrypoint", "")]),
    ("docker run -h box img", "img", 4, 4, [("hostname", "box")]),
    ("docker run -c 512 img", "img", 4, 4, [("cpu-shares", "512")]),
    ("docker run -l a=b img", "img", 4, 4, [("label", "a=b")]),
    ("docker run --net host --dns-opt x --net-alias y img", "img", 8, 8,
     [("network", "host"), ("dns-option", "x"), ("network-alias", "y")]),
    ("docker run - img", "-", 2, 2, []),
    ("docker run '' img", "", 2, 2, []),
    ("docker run -- -img", "-img", 3, 2, []),
    ("docker run -- -- img", "--", 3, 2, []),
    ("docker container run --rm img", "img", 4, 4, [("rm", None)]),
    ("docker container create -t img", "img", 4, 4, [("tty", None)]),
    ("docker create --name c img", "img", 4, 4, [("name", "c")]),
    ("docker -- run img", "img", 3, 3, []),
    ("docker --context=ctx -c other --tlsverify --config /c run img", "img", 8, 8, []),
    ("docker -Dl debug run img", "img", 4, 4, []),
    ("docker -v run img", "img", 3, 3, []),
    ("docker run --gpus all --device /dev/x -e NVIDIA_VISIBLE_DEVICES=0 --runtime runc img nvidia-smi", "img", 10, 10,
     [("gpus", "all"), ("device", "/dev/x"), ("env", "NVIDIA_VISIBLE_DEVICES=0"), ("runtime", "runc")]),
    ("docker run --kernel-memory 4m img", "img", 4, 4, [("kernel-memory", "4m")]),
    ("docker run --help=false img", "img", 3, 3, [("help", "false")]),
]


@pytest.mark.parametrize("line,image,image_index,insert_index,expected", DOCKER_CASES)
def test_docker_cases(line: str, image: str, image_index: int, insert_index: int, expected: Opts) -> None:
    cmd = parse(line)
    assert (cmd.engine, cmd.injectable, cmd.image, cmd.image_index, cmd.insert_index) == (
        "docker", True, image, image_index, insert_index)
    assert opts(cmd) == expected
    assert cmd.command in ("run", "create") and not cmd.rootfs


def test_global_options_and_indices() -> None:
    cmd = parse("docker -H unix:///s --tls -l debug container run img")
    assert [(o.name, o.value, o.start, o.end) for o in cmd.global_options] == [
        ("host", "unix:///s", 1, 3), ("tls", None, 3, 4), ("log-level", "debug", 4, 6)]
    assert cmd.command == "run" and cmd.command_index == 6 and cmd.engine_index == 0
    assert cmd.argv[:cmd.command_index] == ("docker", "-H", "unix:///s", "--tls", "-l", "debug")


def test_option_spans() -> None:
    cmd = parse("docker run -itv /a:/b --rm=false -e X --gpus=all img")
    assert cmd.options == (
        ParsedOption("interactive", None, 2, 4), ParsedOption("tty", None, 2, 4),
        ParsedOption("volume", "/a:/b", 2, 4), ParsedOption("rm", "false", 4, 5),
        ParsedOption("env", "X", 5, 7), ParsedOption("gpus", "all", 7, 8))
    assert cmd.get("env") == ("X",) and cmd.get("rm") == ("false",) and cmd.get("interactive") == ("true",)
    assert cmd.get("device") == ()


# Lines docker runs without a container for nvlow to equip: passed through untouched.
PASS_THROUGH = [
    ("docker ps -a", "ps"),
    ("docker build -t x .", "build"),
    ("docker start c", "start"),
    ("docker exec -it c sh", "exec"),
    ("docker image ls", "image"),
    ("docker container ls", "container"),
    ("docker container -d run img", "container"),
    ("docker container", "container"),
    ("docker run", "run"),
    ("docker container run", "run"),
    ("docker run --rm -it", "run"),
    ("docker run -e", "run"),
    ("docker run --name", "run"),
    ("docker run --help", "run"),
    ("docker run --help img", "run"),
    ("docker create --help=true img", "create"),
    ("docker run --rm --", "run"),
    ("podman ps", "ps"),
]


@pytest.mark.parametrize("line,command", PASS_THROUGH)
def test_pass_through(line: str, command: str) -> None:
    cmd = parse(line)
    assert (cmd.injectable, cmd.command, cmd.image, cmd.insert_index) == (False, command, None, None)
    with pytest.raises(UsageError, match="not run/create"):
        inject(cmd, ["--device=/dev/nvidiactl"])


def test_no_command() -> None:
    for line in ("docker", "docker -D", "docker --version", "sudo", "sudo -E"):
        cmd = parse(line)
        assert (cmd.command, cmd.injectable, cmd.command_index) == (None, False, None)


ERRORS = [
    ("docker run --foo img", "unknown docker run option: --foo"),
    ("docker run --foo=1 img", "unknown docker run option: --foo"),
    ("docker run -x img", "unknown docker run option: -x"),
    ("docker run -itx img", "unknown docker run option: 'x' in -itx"),
    ("docker run -H unix:///s img", "unknown docker run option: -H"),
    ("docker create -d img", "unknown docker create option: -d"),
    ("docker create --sig-proxy=false img", "unknown docker create option: --sig-proxy"),
    ("docker run ---x img", "bad flag syntax: ---x"),
    ("docker run --=x img", "bad flag syntax: --=x"),
    ("docker --foo run img", "unknown docker option: --foo"),
    ("docker -x run img", "unknown docker option: -x"),
    ("docker run -d=  img", "unknown docker run option: '=' in -d="),
    ("podman run --runtime-x y img", "unknown podman run option: --runtime-x"),
    ("podman run --cpu-count 2 img", "unknown podman run option: --cpu-count"),
    ("docker run --rootfs /x", "unknown docker run option: --rootfs"),
    ("docker run --help=maybe img", 'invalid argument "maybe" for "--help" flag'),
]


@pytest.mark.parametrize("line,message", ERRORS)
def test_errors(line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(line)
    assert str(info.value).startswith(message)
    assert info.value.exit_code == 2
    if "unknown" in message or "bad flag" in message:
        assert info.value.hint is not None and "nvlow exec --image IMG" in info.value.hint


def test_image_hint_rescues_unknown_option() -> None:
    cmd = parse("docker run --future-flag -v /a:/b --gpus all --newbool img -v x", image_hint="img")
    assert (cmd.injectable, cmd.image, cmd.image_index, cmd.insert_index) == (True, "img", 8, 8)
    assert opts(cmd) == [("volume", "/a:/b"), ("gpus", "all")]
    assert inject(cmd, ["--device=/dev/nvidia0"]) == shlex.split(
        "docker run --future-flag -v /a:/b --newbool --device=/dev/nvidia0 img -v x")


def test_image_hint_after_dashdash_and_override() -> None:
    cmd = parse("docker run --future x -- img", image_hint="img")
    assert (cmd.image_index, cmd.insert_index) == (5, 4)
    # The hint also wins when the tables read another image (a flag whose kind changed upstream).
    cmd = parse("docker run --rm false img", image_hint="img")
    assert (cmd.image, cmd.image_index) == ("img", 4)
    # A hint matching the parse changes nothing.
    assert parse("docker run -e A img", image_hint="img") == parse("docker run -e A img")


def test_image_hint_not_found() -> None:
    with pytest.raises(UsageError, match="image other is not in the engine command line"):
        parse("docker run --foo img", image_hint="other")


PODMAN_CASES = [
    ("podman run --rm -v /a:/b img", "img", 5, 5, [("rm", None), ("volume", "/a:/b")]),
    ("/usr/bin/podman run --env-host --no-hosts img", "img", 4, 4, [("env-host", None), ("no-hosts", None)]),
    ("podman run --tls-verify=false --rmi img", "img", 4, 4, [("tls-verify", "false"), ("rmi", None)]),
    ("podman run --tls-verify false", "false", 3, 3, [("tls-verify", None)]),
    ("podman run --net host --healthcheck-command true img", "img", 6, 6,
     [("network", "host"), ("health-cmd", "true")]),
    ("podman run --override-arch arm64 img", "img", 4, 4, [("arch", "arm64")]),
    ("podman run --runtime crun --storage-opt x --log-level debug img", "img", 8, 8,
     [("runtime", "crun"), ("storage-opt", "x"), ("log-level", "debug")]),
    ("podman run --pod p --userns keep-id --passwd-entry x img", "img", 8, 8,
     [("pod", "p"), ("userns", "keep-id"), ("passwd-entry", "x")]),
    ("podman create --init-ctr once img", "img", 4, 4, [("init-ctr", "once")]),
    ("podman container run -d img", "img", 4, 4, [("detach", None)]),
    ("podman --remote -c conn --root /r run img", "img", 7, 7, []),
    ("podman -r run --gpus all img", "img", 5, 5, [("gpus", "all")]),
    ("podman-remote run img", "img", 2, 2, []),
    ("PODMAN.EXE run img", "img", 2, 2, []),
]


@pytest.mark.parametrize("line,image,image_index,insert_index,expected", PODMAN_CASES)
def test_podman_cases(line: str, image: str, image_index: int, insert_index: int, expected: Opts) -> None:
    cmd = parse(line)
    assert (cmd.engine, cmd.injectable, cmd.image, cmd.image_index, cmd.insert_index) == (
        "podman", True, image, image_index, insert_index)
    assert opts(cmd) == expected


def test_podman_rootfs() -> None:
    cmd = parse("podman run --rootfs /srv/root /bin/sh")
    assert (cmd.rootfs, cmd.image, cmd.image_index, cmd.insert_index, cmd.injectable) == (True, None, 3, 3, True)
    assert inject(cmd, ["--device=/dev/nvidiactl"]) == [
        "podman", "run", "--rootfs", "--device=/dev/nvidiactl", "/srv/root", "/bin/sh"]
    assert parse("podman run --rootfs=false img").rootfs is False
    assert parse("podman run --rootfs=false img").image == "img"


ENGINE_NAMES = [
    ("docker", "docker"), ("/usr/bin/docker", "docker"), ("docker.exe", "docker"),
    (r"C:\Program Files\Docker\docker.exe", "docker"), ("nerdctl", "docker"), ("podman", "podman"),
    ("/usr/bin/podman", "podman"), ("podman-remote", "podman"), ("mydocker", "docker"),
]


@pytest.mark.parametrize("program,engine", ENGINE_NAMES)
def test_engine_detection(program: str, engine: str) -> None:
    cmd = parse_engine_argv([program, "run", "img"])
    assert (cmd.engine, cmd.image) == (engine, "img")


def test_forced_engine() -> None:
    # --rootfs exists only in podman's table.
    assert parse_engine_argv(["/opt/bin/engine", "run", "--rootfs", "/r"], engine="podman").rootfs
    with pytest.raises(UsageError, match="unknown container engine: lxc"):
        parse_engine_argv(["docker", "run", "img"], engine="lxc")


SUDO_CASES = [
    ("sudo docker run img", 1, "docker"),
    ("sudo -E docker run img", 2, "docker"),
    ("sudo -u bob -g grp docker run img", 5, "docker"),
    ("sudo -ubob podman run img", 2, "podman"),
    ("sudo --user=bob --preserve-env=PATH podman run img", 3, "podman"),
    ("sudo --user bob -- docker run img", 4, "docker"),
    ("sudo -E DOCKER_HOST=unix:///s docker run img", 3, "docker"),
    ("/usr/bin/sudo -nHE docker run img", 2, "docker"),
    ("sudo -hbox docker run img", 2, "docker"),
]


@pytest.mark.parametrize("line,engine_index,engine", SUDO_CASES)
def test_sudo_prefix(line: str, engine_index: int, engine: str) -> None:
    cmd = parse(line)
    assert (cmd.engine_index, cmd.engine, cmd.image, cmd.injectable) == (engine_index, engine, "img", True)
    assert cmd.argv == tuple(shlex.split(line))
    assert cmd.command_index == engine_index + 1
    final = inject(cmd, ["--device=/dev/nvidiactl"])
    assert final[:engine_index + 2] == list(cmd.argv[:engine_index + 2])
    assert final[-2:] == ["--device=/dev/nvidiactl", "img"]


INJECT_CASES = [
    ("docker run --gpus all -it img", "docker run -it A B img"),
    ("docker run --gpus=all -it img sh", "docker run -it A B img sh"),
    ("docker run --gpus '\"device=0,1\"' --rm -- img", "docker run --rm A B -- img"),
    ("docker run --gpus 1 --gpus 2 img --gpus 3", "docker run A B img --gpus 3"),
    ("docker run -it img", "docker run -it A B img"),
]


@pytest.mark.parametrize("line,expected", INJECT_CASES)
def test_inject(line: str, expected: str) -> None:
    assert inject(parse(line), ["A", "B"]) == shlex.split(expected)


def test_inject_keep_and_remove_other() -> None:
    cmd = parse("docker run --gpus all -e X=1 -v /a:/b img")
    assert inject(cmd, ["A"], remove=()) == shlex.split("docker run --gpus all -e X=1 -v /a:/b A img")
    assert inject(cmd, [], remove=("gpus", "env")) == shlex.split("docker run -v /a:/b img")


def test_inject_refuses_to_split_a_cluster() -> None:
    cmd = parse("docker run -itv /a:/b img")
    with pytest.raises(UsageError, match="cannot remove --volume from -itv"):
        inject(cmd, [], remove=("volume",))
    assert inject(cmd, ["A"], remove=("interactive", "tty", "volume")) == ["docker", "run", "A", "img"]


SPLIT_CASES = [
    ("docker", ["docker"]),
    ("sudo docker -D", ["sudo", "docker", "-D"]),
    ("  podman   --remote ", ["podman", "--remote"]),
    ("'/opt/my docker/docker' -H \"unix:///a b\"", ["/opt/my docker/docker", "-H", "unix:///a b"]),
    ("docker $(rm -rf /) ; echo", ["docker", "$(rm", "-rf", "/)", ";", "echo"]),
]


@pytest.mark.parametrize("text,expected", SPLIT_CASES)
def test_split_engine_command(text: str, expected: List[str]) -> None:
    assert split_engine_command(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_split_engine_command_empty(text: str) -> None:
    with pytest.raises(UsageError, match="empty engine command"):
        split_engine_command(text)


def test_split_engine_command_unbalanced_quote() -> None:
    with pytest.raises(UsageError, match="cannot split engine command"):
        split_engine_command("docker -H 'unix:///x")
