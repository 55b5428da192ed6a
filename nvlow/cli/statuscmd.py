"""``nvlow status [--json] [--watch SECONDS]``."""
from __future__ import annotations

import sys
import time

from ..errors import UsageError
from .options import CommonOptions
from .session import long_running, open_root


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Optional


def run_status(opts: CommonOptions, env: Mapping[str, str], watch: Optional[float],
               count: Optional[int] = None) -> int:
    """Print live status once, or every ``watch`` seconds (``count`` times, forever when None)."""
    from ..host.status import format_status, read_status

    if watch is not None and watch <= 0:
        raise UsageError(f"--watch needs a positive number of seconds, not {watch}")
    if count is not None and count <= 0:
        raise UsageError(f"--count needs a positive number of refreshes, not {count}")
    if opts.no_nvml:
        raise UsageError("nvlow status reads its live values from NVML, so --no-nvml leaves nothing to show",
                         hint="drop --no-nvml, or use 'nvlow info --no-nvml' for what /proc and /dev tell")
    if watch is not None:
        long_running()
    root, opener = open_root(opts, env)
    library = opener(root)
    try:
        shown = 0
        while True:
            doc = read_status(library)
            if opts.json:
                import json

                sys.stdout.write(json.dumps(doc) + "\n")
            else:
                if watch is not None and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")
                sys.stdout.write(format_status(doc))
            sys.stdout.flush()
            shown += 1
            if watch is None or (count is not None and shown >= count):
                return 0
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0
    finally:
        library.close()
