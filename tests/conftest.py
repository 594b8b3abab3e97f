from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Loopback HTTP server fixtures (sim_server, sim_server_factory).
from fixtures_http import sim_server, sim_server_factory  # noqa: F401
