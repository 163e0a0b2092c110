"""One error hierarchy for the whole harness, and the exit statuses the CLI maps it to.

Errors are raised for problems the user must fix (a bad file, a bad option). A failing case or
algorithm is *data*, not an exception: it becomes a record with a status and the run goes on.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Self


class ExitStatus(enum.IntEnum):
    """Exit codes of every `harness` command (documented in the README)."""

    OK = 0
    ERROR = 1  # unexpected internal error (a bug: rerun with --debug and report it)
    USAGE = 2  # bad command line (click's own code for usage errors)
    PARTIAL = 3  # the command finished, but some cases failed and were recorded as such
    DATA_ERROR = 4  # input data unusable: missing folder, no cases, unreadable file
    SPEC_ERROR = 5  # a profile, manifest or config file is invalid
    DISK_FULL = 6  # no space left under the results folder (or the work folder); free some, run again
    ENVIRONMENT = 7  # this machine cannot do it: Docker or the scheduler unreachable, base image not makeable here
    HANGUP = 129  # SIGHUP (128 + 1)
    INTERRUPTED = 130  # Ctrl-C (SIGINT, 128 + 2)
    TERMINATED = 143  # SIGTERM (128 + 15), what CI runners, systemd and Kubernetes send
    BROKEN_PIPE = 141  # SIGPIPE (128 + 13): the reader of stdout went away (`| head`)


class HarnessError(Exception):
    """Base of every error the CLI reports as one line (no traceback unless --debug)."""

    exit_status: ExitStatus = ExitStatus.ERROR


class SpecError(HarnessError):
    """A profile, manifest or configuration file is invalid.

    An error about one file (`of`) keeps that file (`path`) and what is wrong with it (`detail`)
    apart, as `CaseError` does, so that a caller that knows the file by another name (a team's
    upload, as the team sent it) renders the message with `about(name)` instead of rewriting it.
    """

    exit_status = ExitStatus.SPEC_ERROR

    def __init__(self, message: str, *, path: Path | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.path = path  # the file the message is about (None: not one file's problem)
        self.detail = detail  # what is wrong with `path`, and the fix

    @classmethod
    def of(cls, path: Path | str, detail: str) -> Self:
        """The file `path` is wrong: "<path>: <detail>"."""
        return cls(f"{cls.named(path)}: {detail}", path=Path(path), detail=detail)

    @classmethod
    def named(cls, path: Path | str) -> str:
        """How `of` names its file in the message."""
        return str(path)

    def about(self, name: str | Path) -> str:
        """The message naming its file `name` ("<name>: <detail>"); as it is when it is about no one file."""
        return f"{name}: {self.detail}" if self.path is not None else str(self)


class UsageError(HarnessError):
    """A command-line value that cannot be right (an organ name that is not in the profile)."""

    exit_status = ExitStatus.USAGE


class HostError(HarnessError):
    """This machine cannot do what was asked (no Docker engine, no scheduler, no debootstrap nor apt-get to fetch it)."""

    exit_status = ExitStatus.ENVIRONMENT


class DataError(HarnessError):
    """Input data is missing, unreadable or inconsistent."""

    exit_status = ExitStatus.DATA_ERROR


class CaseError(DataError):
    """One case cannot be scored; carries the status to record for it.

    Raised by the loaders and checks of a single case; the scoring loop catches it, records the
    case with `status` and the one-line message, and goes on with the next case. An error about one
    file (`CaseError.of`) keeps that file (`path`) and what is wrong with it (`detail`) apart, so a
    caller that knows the file by another name (an output as the container wrote it) renders the
    message with `about(name)` instead of rewriting the text.
    """

    def __init__(self, message: str, *, status: str, path: Path | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.path = path  # the file the message is about (None: not one file's problem)
        self.detail = detail  # what is wrong with `path`, and the fix

    @classmethod
    def of(cls, path: Path, detail: str, *, status: str) -> CaseError:
        """The file `path` cannot be used: "<path>: <detail>"."""
        return cls(f"{path}: {detail}", status=status, path=path, detail=detail)

    def about(self, name: str | Path) -> str:
        """The message naming its file `name` ("<name>: <detail>"); as it is when it is about no one file."""
        return f"{name}: {self.detail}" if self.path is not None else str(self)


class InvalidOutput(HarnessError):
    """An output breaks its contract (`harness.acceptance`): the run's status is `invalid_output`,
    with this one-line message naming the file (in the container's terms) and the fix. Never
    reaches the command line: the run is recorded and the evaluation goes on."""
