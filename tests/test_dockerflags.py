"""The option tables against the lists of docker-cli-flags.md (§§2, 3, 6)."""
from __future__ import annotations

import pytest

from nvlow.engine import dockerflags as df

# docker-cli-flags.md §3, kept here word for word so a table edit cannot drift silently.
DOCKER_BOTH_BOOL = ("help interactive tty publish-all quiet init no-healthcheck oom-kill-disable privileged read-only "
                    "rm use-api-socket disable-content-trust").split()
DOCKER_RUN_ONLY_BOOL = ["detach", "sig-proxy"]
DOCKER_SHORTS = {"a": "attach", "c": "cpu-shares", "e": "env", "h": "hostname", "l": "label", "m": "memory",
                 "p": "publish", "u": "user", "v": "volume", "w": "workdir",
                 "i": "interactive", "t": "tty", "P": "publish-all", "q": "quiet"}
DOCKER_LONG_VALUES = """add-host annotation blkio-weight blkio-weight-device cap-add cap-drop cgroup-parent cgroupns
  cidfile cpu-count cpu-percent cpu-period cpu-quota cpu-rt-period cpu-rt-runtime cpus cpuset-cpus
  cpuset-mems device device-cgroup-rule device-read-bps device-read-iops device-write-bps device-write-iops
  dns dns-option dns-search domainname entrypoint env-file expose gpus group-add health-cmd
  health-interval health-retries health-start-interval health-start-period health-timeout io-maxbandwidth
  io-maxiops ip ip6 ipc isolation label-file link link-local-ip log-driver log-opt mac-address
  memory-reservation memory-swap memory-swappiness mount name network network-alias oom-score-adj pid
  pids-limit platform pull restart runtime security-opt shm-size stop-signal stop-timeout storage-opt
  sysctl tmpfs ulimit userns uts volume-driver volumes-from kernel-memory""".split()
DOCKER_ALIASES = {"net": "network", "net-alias": "network-alias", "dns-opt": "dns-option"}

PODMAN_EXTRA_BOOL = ("env-host http-proxy no-hostname no-hosts read-only-tmpfs replace rootfs unsetenv-all "
                     "tls-verify").split()
PODMAN_RUN_ONLY_BOOL = ["passwd", "rmi"]
PODMAN_EXTRA_VALUES = """arch authfile cert-dir cgroup-conf cgroups chrootdirs conmon-pidfile creds
  decryption-key env-merge gidmap group-entry health-log-destination health-max-log-count health-max-log-size
  health-on-failure health-startup-cmd health-startup-interval health-startup-retries health-startup-success
  health-startup-timeout hosts-file hostuser image-volume init-path os passwd-entry personality pidfile
  pod pod-id-file preserve-fd preserve-fds rdt-class requires retry retry-delay sdnotify seccomp-policy
  secret shm-size-systemd signature-policy subgidname subuidname systemd timeout tz uidmap umask
  unsetenv variant""".split()
PODMAN_RUN_ONLY_VALUES = ["preserve-fd", "preserve-fds", "detach-keys"]
PODMAN_LACKS = """cpu-count cpu-percent domainname health-start-interval io-maxbandwidth io-maxiops isolation link
  link-local-ip net-alias use-api-socket volume-driver""".split()
PODMAN_ALIASES = {"net": "network", "dns-opt": "dns-option", "healthcheck-command": "health-cmd",
                  "healthcheck-interval": "health-interval", "healthcheck-retries": "health-retries",
                  "healthcheck-start-period": "health-start-period", "healthcheck-timeout": "health-timeout"}

DOCKER_GLOBAL_BOOL = ["debug", "tls", "tlsverify", "version", "help"]
DOCKER_GLOBAL_VALUE = ["config", "context", "host", "log-level", "tlscacert", "tlscert", "tlskey"]
DOCKER_GLOBAL_SHORTS = {"D": ("debug", False), "v": ("version", False), "h": ("help", False),
                        "c": ("context", True), "H": ("host", True), "l": ("log-level", True)}
PODMAN_GLOBAL_BOOL = "remote debug noout transient-store trace syslog help version".split()
PODMAN_GLOBAL_VALUE = """cdi-spec-dir cgroup-manager config conmon connection context cpu-profile default-mounts-file
  events-backend hooks-dir host identity imagestore log-level max-workers memory-profile module namespace
  network-backend network-config-dir out pull-option registries-conf root runroot runtime runtime-flag ssh
  storage-driver storage-opt tls-ca tls-cert tls-details tls-key tmpdir url volumepath""".split()


def test_sources_name_files_and_versions() -> None:
    text = "\n".join(df.SOURCES)
    for needle in ("v28.5.2", "v29", "cli/flags/options.go", "cli/command/container/opts.go",
                   "cli/command/container/run.go", "cli/command/container/create.go", "cmd/podman/common/create.go",
                   "cmd/podman/common/netflags.go", "cmd/podman/root.go", "podman main 2026"):
        assert needle in text, needle
    assert "docker/cli" in (df.__doc__ or "") and "containers/podman" in (df.__doc__ or "")


@pytest.mark.parametrize("table", [df.DOCKER_RUN, df.DOCKER_CREATE])
def test_docker_run_create_tables(table: df.FlagTable) -> None:
    for name in DOCKER_BOTH_BOOL:
        assert table.lookup_long(name) == (name, False), name
    for name in DOCKER_LONG_VALUES + list(DOCKER_SHORTS.values()):
        if name not in DOCKER_BOTH_BOOL:
            assert table.lookup_long(name) == (name, True), name
    for letter, name in DOCKER_SHORTS.items():
        assert table.lookup_short(letter) == (name, name not in DOCKER_BOTH_BOOL), letter
    for alias, name in DOCKER_ALIASES.items():
        assert table.lookup_long(alias) == (name, True)


def test_docker_run_only_options() -> None:
    for name in DOCKER_RUN_ONLY_BOOL:
        assert df.DOCKER_RUN.lookup_long(name) == (name, False)
        assert df.DOCKER_CREATE.lookup_long(name) is None
    assert df.DOCKER_RUN.lookup_short("d") == ("detach", False)
    assert df.DOCKER_CREATE.lookup_short("d") is None
    assert df.DOCKER_RUN.lookup_long("detach-keys") == ("detach-keys", True)
    assert df.DOCKER_CREATE.lookup_long("detach-keys") is None


def test_docker_table_sizes() -> None:
    # 84 canonical value options in opts.go (+ net, net-alias, dns-opt aliases) + name, platform, pull.
    assert len(df.DOCKER_CREATE.values) == 88
    assert len(df.DOCKER_CREATE.booleans) == 13
    assert len(df.DOCKER_RUN.values) == 89 and len(df.DOCKER_RUN.booleans) == 15


def test_global_tables() -> None:
    for name in DOCKER_GLOBAL_BOOL:
        assert df.DOCKER_GLOBAL.lookup_long(name) == (name, False)
    for name in DOCKER_GLOBAL_VALUE:
        assert df.DOCKER_GLOBAL.lookup_long(name) == (name, True)
    for letter, found in DOCKER_GLOBAL_SHORTS.items():
        assert df.DOCKER_GLOBAL.lookup_short(letter) == found
    assert df.global_table("docker") is df.DOCKER_GLOBAL
    for name in PODMAN_GLOBAL_BOOL:
        assert df.PODMAN_GLOBAL.lookup_long(name) == (name, False), name
    for name in PODMAN_GLOBAL_VALUE:
        assert df.PODMAN_GLOBAL.lookup_long(name) == (name, True), name
    assert df.PODMAN_GLOBAL.lookup_short("r") == ("remote", False)
    assert df.PODMAN_GLOBAL.lookup_short("c") == ("connection", True)
    assert df.PODMAN_GLOBAL.lookup_short("H") == ("host", True)


def test_letters_that_change_meaning_between_levels() -> None:
    assert [df.DOCKER_RUN.lookup_short(c) for c in "vhcl"] == [
        ("volume", True), ("hostname", True), ("cpu-shares", True), ("label", True)]
    assert df.DOCKER_RUN.lookup_short("H") is None and df.DOCKER_RUN.lookup_short("D") is None


@pytest.mark.parametrize("table", [df.PODMAN_RUN, df.PODMAN_CREATE])
def test_podman_tables(table: df.FlagTable) -> None:
    shared = [n for n in DOCKER_LONG_VALUES if n not in PODMAN_LACKS and n != "runtime" and n != "storage-opt"]
    for name in shared + PODMAN_EXTRA_VALUES:
        if name in PODMAN_RUN_ONLY_VALUES and table is df.PODMAN_CREATE:
            continue
        assert table.lookup_long(name) == (name, True), name
    for name in [n for n in DOCKER_BOTH_BOOL if n != "use-api-socket"] + PODMAN_EXTRA_BOOL:
        assert table.lookup_long(name) == (name, False), name
    for letter, name in DOCKER_SHORTS.items():
        assert table.lookup_short(letter) == (name, name not in DOCKER_BOTH_BOOL)
    for name in PODMAN_LACKS:
        assert table.lookup_long(name) is None, name
    for alias, name in PODMAN_ALIASES.items():
        assert table.lookup_long(alias) == (name, True)
    # Persistent root options are accepted after run/create too.
    assert table.lookup_long("runtime") == ("runtime", True)
    assert table.lookup_long("storage-opt") == ("storage-opt", True)
    assert table.lookup_long("log-level") == ("log-level", True)


def test_podman_run_and_create_only() -> None:
    for name in PODMAN_RUN_ONLY_BOOL + ["detach", "sig-proxy"]:
        assert df.PODMAN_RUN.lookup_long(name) == (name, False)
        assert df.PODMAN_CREATE.lookup_long(name) is None
    for name in PODMAN_RUN_ONLY_VALUES:
        assert df.PODMAN_CREATE.lookup_long(name) is None
    assert df.PODMAN_CREATE.lookup_long("init-ctr") == ("init-ctr", True)
    assert df.PODMAN_RUN.lookup_long("init-ctr") is None
    assert df.PODMAN_RUN.lookup_short("d") == ("detach", False)


def test_sudo_table() -> None:
    assert df.SUDO.lookup_short("u") == ("user", True)
    assert df.SUDO.lookup_short("E") == ("preserve-env", False)
    assert df.SUDO.lookup_long("group") == ("group", True)


def test_canonical_names_never_overlap() -> None:
    for table in (df.DOCKER_GLOBAL, df.DOCKER_RUN, df.DOCKER_CREATE, df.PODMAN_GLOBAL, df.PODMAN_RUN,
                  df.PODMAN_CREATE, df.SUDO):
        assert not table.booleans & table.values
        assert not set(table.aliases) & table.names()
        assert set(table.shorts.values()) <= table.names()
