"""``python -m nvlow`` runs the CLI."""
import gc
import sys

gc.disable()  # as the installed `nvlow` script does (nvlow/cli/script/nvlow); serve and status --watch turn it back on

from .cli import main  # noqa: E402

sys.exit(main())
