"""Where the shared real data lives (see ../shared/realdata/README.md).

The project root's sibling ``shared/realdata`` (the layout of every checkout on
this project's machines), or ``HCPJ_REALDATA`` when set. Tests that use it do
not skip when it is missing: they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    *([Path(os.environ["HCPJ_REALDATA"])] if os.environ.get("HCPJ_REALDATA") else []),
    ROOT.parent / "shared" / "realdata",
    Path("/work/shared/realdata"),
]
REALDATA = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])

