"""``python -m imagecluster`` is the ``imagecluster`` command."""

import sys

from .cli import main

sys.exit(main())
