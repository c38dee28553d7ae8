"""Errors a user can cause. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class HcpjError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 2


class WorkspaceError(HcpjError):
    """The folder is not a workspace, or its hcpj.toml is unusable."""


class ConfigError(HcpjError):
    """A configuration value (hcpj.toml, journey.yaml, an option) is invalid."""


class InputFileError(HcpjError):
    """A whole input file cannot be loaded (encoding, format, missing required column)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class NotBuiltError(HcpjError):
    """An output was asked for before `hcpj build` produced it."""
