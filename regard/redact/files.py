"""Output files: default names, and writes that leave nothing behind when they fail."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from regard.errors import InvalidArgumentError
from regard.image import PHOTO_SUFFIXES  # noqa: F401 (re-exported for redaction)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".3gp", ".ogv", ".flv", ".wmv"}
)


def default_output(path: Path) -> Path:
    """NAME.redacted.EXT next to the input."""
    return path.with_name(f"{path.stem}.redacted{path.suffix}")


def check_output(source: Path | None, output: Path, in_place: bool) -> None:
    """Refuse to write over the input unless `in_place` says so."""
    if source is None or in_place:
        return
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise InvalidArgumentError(f"{output}: the output would overwrite the input; use in_place (--in-place) to allow it")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(output: Path) -> Iterator[Path]:
    """A temporary path next to `output`, renamed to it when the block succeeds, removed if not.

    An error (a corrupt input found half way, a full disk, Ctrl-C) leaves neither a partial output
    nor the temporary file; an existing output is only replaced by a complete one.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=f".partial{output.suffix}", dir=output.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; give it a new file's mode
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
