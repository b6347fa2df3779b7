"""How the command-line tools report a problem the user can fix: one ``error: ...`` line on stderr, exit status 2.

Library code raises ordinary exceptions whose message already names the culprit and the fix (``ConfigError`` and
other ``ValueError``s, ``FileNotFoundError``, ``LookupError``) or a ``UserFacingError`` for failures that are not
bad input (a diverged run, an unusable checkpoint). ``report_errors`` is the one place that turns them into the
one-line report; any other exception is a bug and keeps its traceback.

    def main(argv=None) -> int:
        args = parse_args(argv)
        return report_errors(run, args)
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable


class UserFacingError(RuntimeError):
    """A failure whose one-line message says what happened and what to do (not a bug in flexivid)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (its default prints the whole usage block first), and names an
    unknown flag before anything else: argparse checks required arguments first, so a mistyped flag would otherwise
    be reported as the required one it failed to set."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _unknown_flags(self) -> list[str]:
        """The flags among the given arguments that this parser does not know (before any ``--``)."""
        out = []
        for token in getattr(self, "_given", []):
            if token == "--":
                break
            if not token.startswith(tuple(self.prefix_chars)) or len(token) < 2 or \
                    self._negative_number_matcher.match(token):
                continue
            name = token.split("=", 1)[0]
            known = self._option_string_actions
            if name in known or (len(name) > 2 and name[:2] in known and not name.startswith("--")):
                continue  # exact, or a short flag with its value attached (-n5)
            if self.allow_abbrev and name.startswith("--") and any(k.startswith(name) for k in known):
                continue  # an abbreviation argparse resolves (or reports as ambiguous itself)
            out.append(name)
        return out

    def error(self, message):
        unknown = self._unknown_flags()
        if unknown and not message.startswith("unrecognized arguments"):
            message = f"unrecognized arguments: {' '.join(unknown)}"
        self.exit(2, f"error: {message} (see --help)\n")


def _known() -> tuple[type[BaseException], ...]:
    """The exception types that carry a user-facing message; a module never imported cannot have raised its own."""
    known: list[type[BaseException]] = [ValueError, LookupError, OSError, ImportError, UserFacingError]
    if "safetensors" in sys.modules:  # a truncated or foreign .safetensors file
        known.append(sys.modules["safetensors"].SafetensorError)
    if "flexivid.video_io" in sys.modules:
        known.append(sys.modules["flexivid.video_io"].VideoReadError)
    return tuple(known)


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(e).split()) or type(e).__name__


def report_errors(fn: Callable[..., int | None], *args, **kwargs) -> int:
    """Call ``fn``; a known exception prints ``error: <one line>`` to stderr and returns 2, Ctrl-C returns 130."""
    try:
        return fn(*args, **kwargs) or 0
    except KeyboardInterrupt:
        print("error: interrupted (outputs are written atomically: no partial file was left)", file=sys.stderr)
        return 130
    except _known() as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


def check_device(name: str | None):
    """``--device`` as a ``torch.device`` (None: cuda when available, else cpu); ValueError naming the fix."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here; "
                             f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu" and not (device.type == "mps" and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: {device.type} is not available here; use cpu or cuda")
    return device
