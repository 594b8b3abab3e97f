"""``python -m flashevolve_nb``: the ``flashevolve`` command, with no script on PATH needed."""

from __future__ import annotations

import sys

from flashevolve_nb.cli import main

sys.exit(main())
