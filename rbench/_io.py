"""Atomic file writes and content digests.

Every file rbench writes goes to a temporary name in the same directory first and is renamed into place, so an
interrupted command never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

USER_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rbench"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # writers that recreate the file get mkstemp's 0600 back
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_dir_public(path: str | os.PathLike[str]) -> None:
    """``tempfile.mkdtemp`` makes 0700 directories; give a finished one the usual permissions."""
    os.chmod(path, 0o777 & ~_umask())


def verify_sha256(path: str | os.PathLike[str], expected: str, recorded_in: str, when: str) -> None:
    """Refuse a file whose bytes are not the ones recorded (``ArtifactError``, exit 3: rebuild required).

    ``recorded_in`` names the record ("manifest", "sidecar"); ``when`` the moment it was made ("export").
    """
    from rbench.errors import ArtifactError

    path = Path(path)
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactError(
            f"rebuild required: {path.name} in {path.parent} was modified after {when} "
            f"(sha256 {actual[:12]}…, {recorded_in} says {expected[:12]}…)"
        )


def read_json_record(path: str | os.PathLike[str], schema: int, require: Any, what: str) -> dict[str, Any]:
    """Read a JSON record (a manifest, a sidecar) that rbench wrote, and check its shape and schema version.

    ``require(record)`` touches every field the reader needs; a record that does not parse or lacks one is bad input
    (exit 2), one of another schema version needs a rebuild (exit 3).
    """
    from rbench.errors import ArtifactError, BadInputError, first_line

    path = Path(path)
    try:
        record = json.loads(path.read_text())
        require(record)
    except (json.JSONDecodeError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise BadInputError(f"corrupt {what} {path}: {first_line(exc)}") from None
    if record.get("schema") != schema:
        raise ArtifactError(
            f"rebuild required: {path} has {what} schema {record.get('schema')}, this rbench reads schema {schema}"
        )
    return record


def remove_stale_temp_dirs(
    folder: str | os.PathLike[str], prefixes: tuple[str, ...] = (".tmp-", ".old-")
) -> list[Path]:
    """Remove ``<prefix>…-pid<N>-…`` folders whose process no longer exists (killed before it could clean up)."""
    import re
    import shutil

    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        found = re.search(r"-pid(\d+)-", entry.name)
        if entry.is_dir() and entry.name.startswith(prefixes) and found and not _pid_alive(int(found.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def temp_dir_prefix(kind: str, name: str) -> str:
    """The prefix of a temporary folder, with this process's id so a later run can tell an orphan."""
    return f".{kind}-{name}-pid{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_output_folder(out: Path) -> None:
    """``--out`` must be a folder (or creatable as one) that this user may write: checked before the model is built."""
    from rbench.errors import BadInputError

    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; it must be a folder for artifact directories")
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise BadInputError(f"--out {out}: {existing} is a file, so no folder can be made there")
    try:  # a real probe: permissions, read-only mounts and special file systems all answer here
        tempfile.TemporaryDirectory(prefix=temp_dir_prefix("probe", "out"), dir=existing).cleanup()
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot write in {existing} ({exc.strerror or type(exc).__name__})") from None
