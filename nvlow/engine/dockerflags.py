"""Option tables of the docker and podman CLIs, for the argv parser in :mod:`nvlow.engine.argv`.

Each table says, for one command level, which long options exist, whether they take a
value, their one-letter short forms and the alias names the CLI accepts. Facts only
(names and kinds), taken from these sources:

- docker/cli v28.5.2, compared with v29.7.2 (identical names, kinds and short forms):
  ``cli/flags/options.go`` (global client options), ``cmd/docker/docker.go`` (``-v``),
  ``cli/cobra.go`` (hidden global ``-h/--help``), ``cli/command/container/opts.go``
  (the shared run/create options), ``cli/command/container/run.go`` and ``create.go``.
- containers/podman main (2026): ``cmd/podman/root.go`` (global options; the
  persistent ones are also accepted after ``run``/``create``),
  ``cmd/podman/common/create.go`` and ``netflags.go`` (create mode),
  ``cmd/podman/containers/run.go`` and ``create.go``, ``cmd/podman/utils/alias.go``.
- sudo(8) getopt string ``+Aa:BbC:c:D:Eeg:Hh::iKklNnPp:R:r:SsT:t:U:u:Vv`` (to skip a
  leading ``sudo`` and its options).

Example:
    >>> DOCKER_RUN.lookup_long("net")
    ('network', True)
    >>> DOCKER_RUN.lookup_short("v"), DOCKER_GLOBAL.lookup_short("v")
    (('volume', True), ('version', False))
"""
from __future__ import annotations

from ..frozen import Record, field


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, FrozenSet, Iterable, Mapping, Optional, Tuple


SOURCES: Tuple[str, ...] = (
    "docker/cli v28.5.2 + v29.7.2: cli/flags/options.go",
    "docker/cli v28.5.2 + v29.7.2: cmd/docker/docker.go",
    "docker/cli v28.5.2 + v29.7.2: cli/cobra.go",
    "docker/cli v28.5.2 + v29.7.2: cli/command/container/opts.go",
    "docker/cli v28.5.2 + v29.7.2: cli/command/container/run.go",
    "docker/cli v28.5.2 + v29.7.2: cli/command/container/create.go",
    "containers/podman main 2026: cmd/podman/root.go",
    "containers/podman main 2026: cmd/podman/common/create.go",
    "containers/podman main 2026: cmd/podman/common/netflags.go",
    "containers/podman main 2026: cmd/podman/containers/run.go",
    "containers/podman main 2026: cmd/podman/containers/create.go",
    "containers/podman main 2026: cmd/podman/utils/alias.go",
    "sudo(8): getopt string +Aa:BbC:c:D:Eeg:Hh::iKklNnPp:R:r:SsT:t:U:u:Vv",
)


class FlagTable(Record):
    """The options of one command level (e.g. ``docker run``).

    ``booleans``/``values`` hold canonical long names; ``shorts`` maps a letter to its
    canonical long name; ``aliases`` maps an accepted alternative name to the canonical one.
    """

    title: str
    booleans: FrozenSet[str]
    values: FrozenSet[str]
    shorts: Mapping[str, str] = field(default_factory=dict, compare=False)
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)

    def canonical(self, name: str) -> str:
        """The canonical long name for ``name`` (aliases resolved)."""
        return self.aliases.get(name, name)

    def lookup_long(self, name: str) -> Optional[Tuple[str, bool]]:
        """``(canonical name, takes a value)`` for a long option, or None when unknown."""
        name = self.canonical(name)
        if name in self.values:
            return name, True
        if name in self.booleans:
            return name, False
        return None

    def lookup_short(self, letter: str) -> Optional[Tuple[str, bool]]:
        """``(canonical name, takes a value)`` for a short letter, or None when unknown."""
        name = self.shorts.get(letter)
        return None if name is None else self.lookup_long(name)

    def names(self) -> FrozenSet[str]:
        """Every canonical long name."""
        return self.booleans | self.values


def _words(text: str) -> FrozenSet[str]:
    return frozenset(text.split())


def _table(title: str, booleans: Iterable[str], values: Iterable[str],
           shorts: Mapping[str, str], aliases: Optional[Mapping[str, str]] = None) -> FlagTable:
    table = FlagTable(title, frozenset(booleans), frozenset(values), dict(shorts), dict(aliases or {}))
    overlap = table.booleans & table.values
    assert not overlap, f"{title}: both boolean and value: {sorted(overlap)}"
    assert set(table.shorts.values()) <= table.names(), title
    return table


# --- docker -------------------------------------------------------------------------

_DOCKER_GLOBAL_BOOL = _words("debug tls tlsverify version help")
_DOCKER_GLOBAL_VALUE = _words("config context host log-level tlscacert tlscert tlskey")
# -h is the hidden, deprecated shorthand of the global --help (cli/cobra.go).
_DOCKER_GLOBAL_SHORT = {"D": "debug", "v": "version", "h": "help", "c": "context", "H": "host", "l": "log-level"}

_DOCKER_RUNCREATE_BOOL = _words(
    "help interactive tty publish-all quiet init no-healthcheck oom-kill-disable privileged read-only rm "
    "use-api-socket disable-content-trust")
_DOCKER_RUN_ONLY_BOOL = _words("detach sig-proxy")
_DOCKER_RUNCREATE_VALUE = _words(
    "attach cpu-shares env hostname label memory publish user volume workdir "
    "add-host annotation blkio-weight blkio-weight-device cap-add cap-drop cgroup-parent cgroupns cidfile "
    "cpu-count cpu-percent cpu-period cpu-quota cpu-rt-period cpu-rt-runtime cpus cpuset-cpus cpuset-mems "
    "device device-cgroup-rule device-read-bps device-read-iops device-write-bps device-write-iops dns "
    "dns-option dns-search domainname entrypoint env-file expose gpus group-add health-cmd health-interval "
    "health-retries health-start-interval health-start-period health-timeout io-maxbandwidth io-maxiops ip "
    "ip6 ipc isolation label-file link link-local-ip log-driver log-opt mac-address memory-reservation "
    "memory-swap memory-swappiness mount name network network-alias oom-score-adj pid pids-limit platform "
    "pull restart runtime security-opt shm-size stop-signal stop-timeout storage-opt sysctl tmpfs ulimit "
    "userns uts volume-driver volumes-from kernel-memory")
_DOCKER_RUN_ONLY_VALUE = _words("detach-keys")
_DOCKER_RUNCREATE_SHORT = {
    "a": "attach", "c": "cpu-shares", "e": "env", "h": "hostname", "i": "interactive", "l": "label",
    "m": "memory", "p": "publish", "P": "publish-all", "q": "quiet", "t": "tty", "u": "user",
    "v": "volume", "w": "workdir",
}
# Hidden flags bound to the same variable as their visible twin (opts.go MarkHidden).
_DOCKER_ALIASES = {"net": "network", "net-alias": "network-alias", "dns-opt": "dns-option"}

DOCKER_GLOBAL = _table("docker", _DOCKER_GLOBAL_BOOL, _DOCKER_GLOBAL_VALUE, _DOCKER_GLOBAL_SHORT)
DOCKER_RUN = _table("docker run", _DOCKER_RUNCREATE_BOOL | _DOCKER_RUN_ONLY_BOOL,
                    _DOCKER_RUNCREATE_VALUE | _DOCKER_RUN_ONLY_VALUE,
                    dict(_DOCKER_RUNCREATE_SHORT, d="detach"), _DOCKER_ALIASES)
DOCKER_CREATE = _table("docker create", _DOCKER_RUNCREATE_BOOL, _DOCKER_RUNCREATE_VALUE,
                       _DOCKER_RUNCREATE_SHORT, _DOCKER_ALIASES)

# --- podman -------------------------------------------------------------------------

# root.go: persistent flags (accepted by every subcommand, run/create included) ...
_PODMAN_PERSISTENT_BOOL = _words("transient-store trace syslog help")
_PODMAN_PERSISTENT_VALUE = _words(
    "cdi-spec-dir cgroup-manager conmon cpu-profile default-mounts-file events-backend hooks-dir imagestore "
    "log-level max-workers memory-profile namespace network-backend network-config-dir pull-option "
    "registries-conf root runroot runtime runtime-flag storage-driver storage-opt tmpdir volumepath")
# ... and local root flags (only before the command). --version/-v comes from cobra's Version.
_PODMAN_LOCAL_BOOL = _words("remote noout debug version")
_PODMAN_LOCAL_VALUE = _words(
    "config connection context host identity module out ssh tls-ca tls-cert tls-details tls-key url")
# podman defines --help without a shorthand; pflag itself answers an unknown -h with help.
_PODMAN_GLOBAL_SHORT = {"r": "remote", "D": "debug", "v": "version", "h": "help", "c": "connection", "H": "host"}

_PODMAN_RUNCREATE_BOOL = _words(
    "disable-content-trust unsetenv-all env-host http-proxy init interactive oom-kill-disable privileged "
    "publish-all quiet read-only read-only-tmpfs rm rootfs tls-verify tty replace no-healthcheck help "
    "no-hostname no-hosts")
_PODMAN_RUN_ONLY_BOOL = _words("sig-proxy rmi detach passwd")
_PODMAN_RUNCREATE_VALUE = _words(
    "annotation attach authfile cap-add cap-drop cgroupns cgroups cidfile device-cgroup-rule env-merge "
    "env-file expose group-add hostuser image-volume init-path ipc kernel-memory log-driver log-opt "
    "oom-score-adj arch os variant platform pod-id-file pull rdt-class requires retry retry-delay sdnotify "
    "secret stop-signal stop-timeout systemd personality timeout tmpfs tz umask user mount workdir "
    "seccomp-policy cgroup-conf pidfile chrootdirs passwd-entry group-entry decryption-key signature-policy "
    "cert-dir creds env unsetenv ulimit health-cmd health-interval health-log-destination "
    "health-max-log-count health-max-log-size health-retries health-start-period health-timeout "
    "health-on-failure health-startup-cmd health-startup-interval health-startup-retries "
    "health-startup-success health-startup-timeout restart shm-size shm-size-systemd sysctl security-opt "
    "subgidname subuidname gidmap gpus uidmap userns uts cgroup-parent conmon-pidfile entrypoint hostname "
    "label label-file pid volume device volumes-from name pod cpu-period cpu-quota cpu-rt-period "
    "cpu-rt-runtime memory-reservation memory-swappiness device-read-iops device-write-iops pids-limit cpus "
    "cpuset-cpus memory cpu-shares cpuset-mems memory-swap device-read-bps device-write-bps blkio-weight "
    "blkio-weight-device "
    # netflags.go
    "add-host hosts-file dns dns-option dns-search ip ip6 mac-address network network-alias publish")
_PODMAN_RUN_ONLY_VALUE = _words("preserve-fds preserve-fd detach-keys")
_PODMAN_CREATE_ONLY_VALUE = _words("init-ctr")
_PODMAN_RUNCREATE_SHORT = dict(_DOCKER_RUNCREATE_SHORT)
# utils.AliasFlags, the normalising function of podman run/create.
_PODMAN_ALIASES = {
    "dns-opt": "dns-option", "net": "network",
    "healthcheck-command": "health-cmd", "healthcheck-interval": "health-interval",
    "healthcheck-retries": "health-retries", "healthcheck-start-period": "health-start-period",
    "healthcheck-timeout": "health-timeout",
    "override-arch": "arch", "override-os": "os", "override-variant": "variant",
}

PODMAN_GLOBAL = _table("podman", _PODMAN_PERSISTENT_BOOL | _PODMAN_LOCAL_BOOL,
                       _PODMAN_PERSISTENT_VALUE | _PODMAN_LOCAL_VALUE, _PODMAN_GLOBAL_SHORT,
                       {"cni-config-dir": "network-config-dir"})
PODMAN_RUN = _table("podman run", _PODMAN_RUNCREATE_BOOL | _PODMAN_RUN_ONLY_BOOL | _PODMAN_PERSISTENT_BOOL,
                    _PODMAN_RUNCREATE_VALUE | _PODMAN_RUN_ONLY_VALUE | _PODMAN_PERSISTENT_VALUE,
                    dict(_PODMAN_RUNCREATE_SHORT, d="detach"), _PODMAN_ALIASES)
PODMAN_CREATE = _table("podman create", _PODMAN_RUNCREATE_BOOL | _PODMAN_PERSISTENT_BOOL,
                       _PODMAN_RUNCREATE_VALUE | _PODMAN_CREATE_ONLY_VALUE | _PODMAN_PERSISTENT_VALUE,
                       _PODMAN_RUNCREATE_SHORT, _PODMAN_ALIASES)

# --- sudo ---------------------------------------------------------------------------

SUDO = _table(
    "sudo",
    _words("askpass background bell preserve-env set-home login remove-timestamp reset-timestamp list "
           "non-interactive no-update preserve-groups stdin shell validate version help edit"),
    _words("auth-type close-from login-class chdir group host prompt chroot role command-timeout type "
           "other-user user"),
    {"A": "askpass", "a": "auth-type", "B": "bell", "b": "background", "C": "close-from", "c": "login-class",
     "D": "chdir", "E": "preserve-env", "e": "edit", "g": "group", "H": "set-home", "h": "help",
     "i": "login", "K": "remove-timestamp", "k": "reset-timestamp", "l": "list", "N": "no-update", "n": "non-interactive",
     "P": "preserve-groups", "p": "prompt", "R": "chroot", "r": "role", "S": "stdin", "s": "shell",
     "T": "command-timeout", "t": "type", "U": "other-user", "u": "user", "V": "version", "v": "validate"},
)
# sudo -h takes an optional attached host (-hHOST); a bare -h is help.

_TABLES: Dict[Tuple[str, str], FlagTable] = {
    ("docker", ""): DOCKER_GLOBAL, ("docker", "run"): DOCKER_RUN, ("docker", "create"): DOCKER_CREATE,
    ("podman", ""): PODMAN_GLOBAL, ("podman", "run"): PODMAN_RUN, ("podman", "create"): PODMAN_CREATE,
}

ENGINES: Tuple[str, ...] = ("docker", "podman")


def global_table(engine: str) -> FlagTable:
    """The global option table of ``engine`` ("docker" or "podman")."""
    return _TABLES[(engine, "")]


def command_table(engine: str, command: str) -> FlagTable:
    """The option table of ``engine``'s ``run`` or ``create`` command."""
    return _TABLES[(engine, command)]
