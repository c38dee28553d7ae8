"""hcpjourney: HCP journey intelligence."""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hcpjourney.config import Workspace
    from hcpjourney.identity.profile360 import Profile360

__version__ = "0.1.0"
__all__ = ["__version__", "profile"]


def profile(workspace: Workspace | str | PathLike[str], hcp_id: str) -> Profile360:
    """The 360 profile of one HCP: golden record with lineage, source records, timeline,
    consent state, outcomes, feedback and peer network (see ``hcpjourney.identity.profile360``).

    Raises ``UnknownHcpError`` (an ``HcpjError``) when no HCP has ``hcp_id``. The result
    holds personal data; its ``repr`` does not show it.
    """
    from hcpjourney.identity.profile360 import profile as _profile

    return _profile(workspace, hcp_id)
