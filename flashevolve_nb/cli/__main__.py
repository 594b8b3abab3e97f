from __future__ import annotations

import sys

from flashevolve_nb.cli import main

sys.exit(main())
