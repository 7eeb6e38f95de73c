import contextlib
import sys

from .cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
