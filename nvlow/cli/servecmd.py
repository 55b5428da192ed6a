"""``nvlow serve``: the nvidia-docker-plugin compatible REST API and the ``nvidia-docker`` volume plugin."""
from __future__ import annotations

import os
from typing import List, Mapping, Optional

import typer

from .options import CommonOptions


def _registration_dirs(spec_dir: Optional[str], socket_dir: str) -> List[str]:
    """Where another plugin of the same name would collide with this one: the directories nvlow
    registers in, and dockerd's own plugin directories when it registers in one of them (a spec or
    socket elsewhere, as in tests, is not seen by the system's dockerd)."""
    from ..serve.server import DOCKER_PLUGIN_DIRS

    mine = [d for d in (spec_dir, socket_dir) if d]
    system = {os.path.realpath(d) for d in DOCKER_PLUGIN_DIRS}
    if any(os.path.realpath(d) in system for d in mine):
        mine += [d for d in DOCKER_PLUGIN_DIRS if d not in mine]
    return mine


def run_serve(opts: CommonOptions, env: Mapping[str, str], *, listen: str, plugin_socket_dir: Optional[str],
              plugin_spec_dir: Optional[str], volumes_dir: Optional[str], no_plugin: bool,
              verbose: bool, allow_remote_clients: bool = False, plugin_name: Optional[str] = None,
              engine_root: Optional[str] = None) -> int:
    """Start both servers and block until SIGTERM/SIGINT."""
    from ..plan.plan import PLUGIN_DRIVER, check_engine_root, check_plugin_name
    from ..serve.cache import DiscoveryCache
    from ..serve.server import (DEFAULT_SOCKET_DIR, DEFAULT_SPEC_DIR, NvlowServer, ServeState,
                                check_plugin_name_free, is_loopback, parse_listen, prepare_socket_dir,
                                serve_until_signal, write_spec)
    from ..plan.volume import DEFAULT_VOLUMES_DIR
    from .session import long_running, open_root, warn

    long_running()
    if opts.json:
        from ..errors import UsageError

        # serve logs lines for people; its machine-readable output is the API itself
        raise UsageError("nvlow serve has no JSON output: it logs to stderr and answers JSON over HTTP",
                         hint="ask GET /healthz, /v2/info or /v2/args once it is listening")
    name = check_plugin_name(plugin_name or PLUGIN_DRIVER)
    engine = check_engine_root(engine_root) if engine_root else None
    host, port = parse_listen(listen)
    if not is_loopback(host) and not allow_remote_clients:
        from ..errors import UsageError

        raise UsageError(f"--listen {listen} would serve the API beyond this machine, and it has no authentication",
                         hint="add --allow-remote-clients to confirm (and firewall the port), or listen on 127.0.0.1")
    spec_dir = plugin_spec_dir if plugin_spec_dir is not None else (None if opts.simulate else DEFAULT_SPEC_DIR)
    socket_dir = os.path.abspath(plugin_socket_dir or DEFAULT_SOCKET_DIR)  # the spec names it for dockerd
    notes: List[str] = []
    if not no_plugin:
        socket_path = os.path.join(socket_dir, f"{name}.sock")
        spec_path = os.path.join(spec_dir, f"{name}.spec") if spec_dir else None
        # before anything is created or bound: another plugin of this name means dockerd would
        # send nvidia_driver_* requests to one of the two
        notes = check_plugin_name_free(name, socket_path, spec_path, _registration_dirs(spec_dir, socket_dir))
    root, opener = open_root(opts, env)
    cache = DiscoveryCache(root, opener, use_nvml=not opts.no_nvml, load_uvm=not opts.no_uvm_load)
    state = ServeState(cache, volumes_dir=volumes_dir or DEFAULT_VOLUMES_DIR, verbose=verbose,
                       plugin_name=name, engine_root=engine)
    state.log("discovering GPU devices")
    try:
        found = cache.host()
        state.log(f"driver {found.driver_version or 'unknown'}, {len(found.gpus)} GPU(s) via {found.source}")
        for w in found.warnings:
            warn(w)
    except Exception as exc:  # noqa: BLE001 - serve anyway; /healthz reports it and discovery is retried
        warn(f"discovery failed, will retry on each request: {exc}")
    if engine is not None and engine != root.path:
        state.log(f"the engine sees the host root {root.path} at {engine}")
    plugin_socket = None if no_plugin else prepare_socket_dir(socket_dir, name)
    server = NvlowServer(state, (host, port), plugin_socket)
    if not is_loopback(host):
        warn(f"listening on {host}:{port}: the API has no authentication, anyone who can reach this "
             "address can read the GPU inventory and docker arguments")
    if plugin_socket:
        for n in notes:
            state.log(n)
        if spec_dir:
            try:
                spec = write_spec(spec_dir, plugin_socket, name)
                state.log(f"plugin spec {spec}")
            except OSError as exc:
                warn(f"cannot write the plugin spec in {spec_dir}: {exc.strerror}; "
                     f"dockerd will not find the '{name}' volume driver")
        state.log(f"provisioning volumes at {state.volumes_dir}")
        state.log(f"serving plugin API '{name}' at {plugin_socket}")
    # serve_until_signal logs "serving remote API at ..." once its signal handlers are in place,
    # so a supervisor that stops us right after that line gets a graceful stop
    return serve_until_signal(server)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the nvlow app."""
    from .app import DEBUG, ENGINE_ROOT, NO_NVML, NO_UVM, ROOT, SIMULATE, _common, _run
    from .options import ENV_OPTIONS

    @app.command("serve")
    def serve_cmd(
        listen: str = typer.Option("127.0.0.1:3476", "--listen", help="REST address HOST:PORT. Loopback by "
                                   "default; other addresses need --allow-remote-clients (no authentication)."),
        allow_remote_clients: bool = typer.Option(False, "--allow-remote-clients", help="Confirm a non-loopback "
                                                  "--listen: anyone who reaches it reads the GPU inventory."),
        plugin_name: str = typer.Option("nvidia-docker", "--plugin-name", envvar=ENV_OPTIONS["plugin_name"],
                                        help="Name of the Docker volume plugin: what clients pass to "
                                        "--volume-driver, the socket NAME.sock and the spec NAME.spec "
                                        "(nvidia-docker 1.0's name by default)."),
        plugin_socket_dir: Optional[str] = typer.Option(None, "--plugin-socket-dir", help="Root-only directory "
                                                        "for the volume plugin socket NAME.sock (default /run/nvlow)."),
        plugin_spec_dir: Optional[str] = typer.Option(None, "--plugin-spec-dir", help="Where to write NAME.spec "
                                                      "for dockerd (default /etc/docker/plugins; '' = do not write; "
                                                      "not written with --simulate unless given)."),
        volumes_dir: Optional[str] = typer.Option(None, "--volumes-dir", help="Where driver volumes are built "
                                                  "(default /var/lib/nvlow/volumes)."),
        no_plugin: bool = typer.Option(False, "--no-plugin", help="Serve only the REST API."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log one line per request on stderr."),
        root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML, debug: bool = DEBUG,
        no_uvm_load: bool = NO_UVM, engine_root: Optional[str] = ENGINE_ROOT,
        json_: bool = typer.Option(False, "--json", help="Accepted as on every command, but refused: serve "
                                   "logs for people and answers JSON over HTTP (/healthz, /v2/info)."),
    ) -> None:
        """Serve nvidia-docker-plugin's REST API (:3476) and the 'nvidia-docker' Docker volume plugin."""
        opts = _common(root, simulate, no_nvml, debug, json_, no_uvm_load)
        _run(debug, lambda: run_serve(opts, os.environ, listen=listen, plugin_socket_dir=plugin_socket_dir,
                                      plugin_spec_dir=plugin_spec_dir, volumes_dir=volumes_dir,
                                      no_plugin=no_plugin, verbose=verbose,
                                      allow_remote_clients=allow_remote_clients, plugin_name=plugin_name,
                                      engine_root=engine_root))
