"""``python -m userstream.cli``: the ``userstream`` command."""

import sys

from userstream.cli import main

sys.exit(main())
