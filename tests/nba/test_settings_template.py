"""The [nba] section a new workspace's hcpj.toml carries is valid and states the defaults."""

from __future__ import annotations

from hcpjourney.config import CONFIG_FILE, Workspace
from hcpjourney.nba.settings import NbaSettings


def test_new_workspace_template_states_the_nba_defaults(tmp_path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    assert "contacts_per_week" in ws.settings["nba"]
    from_template = NbaSettings.from_settings(ws.settings, where=str(ws.root / CONFIG_FILE))
    assert from_template == NbaSettings.from_settings({})
