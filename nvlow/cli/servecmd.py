"""``nvlow serve``: the nvidia-docker-plugin compatible REST API and the ``nvlow`` volume plugin."""
from __future__ import annotations

import os
from typing import Mapping, Optional

import typer

from .options import CommonOptions


def run_serve(opts: CommonOptions, env: Mapping[str, str], *, listen: str, plugin_socket_dir: Optional[str],
              plugin_spec_dir: Optional[str], volumes_dir: Optional[str], no_plugin: bool,
              verbose: bool, allow_remote_clients: bool = False) -> int:
    """Start both servers and block until SIGTERM/SIGINT."""
    from ..serve.cache import DiscoveryCache
    from ..serve.server import (DEFAULT_SOCKET_DIR, DEFAULT_SPEC_DIR, NvlowServer, ServeState, is_loopback,
                                parse_listen, prepare_socket_dir, serve_until_signal, write_spec)
    from ..volume import DEFAULT_VOLUMES_DIR
    from .session import open_root, warn

    host, port = parse_listen(listen)
    if not is_loopback(host) and not allow_remote_clients:
        from ..errors import UsageError

        raise UsageError(f"--listen {listen} would serve the API beyond this machine, and it has no authentication",
                         hint="add --allow-remote-clients to confirm (and firewall the port), or listen on 127.0.0.1")
    root, opener = open_root(opts, env)
    cache = DiscoveryCache(root, opener, use_nvml=not opts.no_nvml, load_uvm=not opts.no_uvm_load)
    state = ServeState(cache, volumes_dir=volumes_dir or DEFAULT_VOLUMES_DIR, verbose=verbose)
    state.log("discovering GPU devices")
    try:
        found = cache.host()
        state.log(f"driver {found.driver_version or 'unknown'}, {len(found.gpus)} GPU(s) via {found.source}")
        for w in found.warnings:
            warn(w)
    except Exception as exc:  # noqa: BLE001 - serve anyway; /healthz reports it and discovery is retried
        warn(f"discovery failed, will retry on each request: {exc}")
    socket_path = None
    if not no_plugin:
        socket_path = prepare_socket_dir(plugin_socket_dir or DEFAULT_SOCKET_DIR)
    server = NvlowServer(state, (host, port), socket_path)
    if not is_loopback(host):
        warn(f"listening on {host}:{port}: the API has no authentication, anyone who can reach this "
             "address can read the GPU inventory and docker arguments")
    if socket_path:
        spec_dir = plugin_spec_dir if plugin_spec_dir is not None else (None if opts.simulate else DEFAULT_SPEC_DIR)
        if spec_dir:
            try:
                spec = write_spec(spec_dir, socket_path)
                state.log(f"plugin spec {spec}")
            except OSError as exc:
                warn(f"cannot write the plugin spec in {spec_dir}: {exc.strerror}; "
                     f"dockerd will not find the 'nvlow' volume driver")
        state.log(f"provisioning volumes at {state.volumes_dir}")
        state.log(f"serving plugin API at {socket_path}")
    # serve_until_signal logs "serving remote API at ..." once its signal handlers are in place,
    # so a supervisor that stops us right after that line gets a graceful stop
    return serve_until_signal(server)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the nvlow app."""
    from .app import DEBUG, NO_NVML, NO_UVM, ROOT, SIMULATE, _common, _run

    @app.command("serve")
    def serve_cmd(
        listen: str = typer.Option("127.0.0.1:3476", "--listen", help="REST address HOST:PORT. Loopback by "
                                   "default; other addresses need --allow-remote-clients (no authentication)."),
        allow_remote_clients: bool = typer.Option(False, "--allow-remote-clients", help="Confirm a non-loopback "
                                                  "--listen: anyone who reaches it reads the GPU inventory."),
        plugin_socket_dir: Optional[str] = typer.Option(None, "--plugin-socket-dir", help="Root-only directory "
                                                        "for the volume plugin socket nvlow.sock (default /run/nvlow)."),
        plugin_spec_dir: Optional[str] = typer.Option(None, "--plugin-spec-dir", help="Where to write nvlow.spec "
                                                      "for dockerd (default /etc/docker/plugins; '' = do not write; "
                                                      "not written with --simulate unless given)."),
        volumes_dir: Optional[str] = typer.Option(None, "--volumes-dir", help="Where driver volumes are built "
                                                  "(default /var/lib/nvlow/volumes)."),
        no_plugin: bool = typer.Option(False, "--no-plugin", help="Serve only the REST API."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log one line per request on stderr."),
        root: str = ROOT, simulate: Optional[str] = SIMULATE, no_nvml: bool = NO_NVML, debug: bool = DEBUG,
        no_uvm_load: bool = NO_UVM,
    ) -> None:
        """Serve nvidia-docker-plugin's REST API (:3476) and the 'nvlow' Docker volume plugin."""
        opts = _common(root, simulate, no_nvml, debug, False, no_uvm_load)
        _run(debug, lambda: run_serve(opts, os.environ, listen=listen, plugin_socket_dir=plugin_socket_dir,
                                      plugin_spec_dir=plugin_spec_dir, volumes_dir=volumes_dir,
                                      no_plugin=no_plugin, verbose=verbose,
                                      allow_remote_clients=allow_remote_clients))
