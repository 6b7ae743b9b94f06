"""Find dataset files locally, or download them into the cache; every file is checked by its SHA-256.

Search order for a file of dataset D: ``data_dir/D/`` then ``data_dir`` itself (the command's
``--data-dir``), the same two under ``$VAEKIT_DATA``, then the cache (``$VAEKIT_CACHE`` or
``~/.cache/vaekit``) ``/D/``. MNIST and Fashion-MNIST share file names, so a name is no proof of
identity: every file read from disk, cached or not, must have its dataset's known SHA-256. The check
is remembered by path, size and mtime in the cache's ``verified.json``, so only a first load pays for
it. A download is written to a temporary name beside its target and renamed only after its checksum
matches, so a partial or mismatching download never stays in the cache.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

VERIFIED_FILE = "verified.json"


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name as the mirrors serve it
    sha256: str
    size: int


def cache_dir() -> Path:
    if os.environ.get("VAEKIT_CACHE"):
        return Path(os.environ["VAEKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaekit"


def search_dirs(dataset: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders searched for ``dataset``'s files, in order (see the module docstring)."""
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("VAEKIT_DATA")):
        if root:
            root = Path(root).expanduser().absolute()
            dirs += [d for d in (root / dataset, root) if d not in dirs]
    dirs.append(cache_dir() / dataset)
    return dirs


def check_roots(dataset: str, data_dir) -> None:
    """A data folder the user named (``--data-dir`` or ``$VAEKIT_DATA``) must exist: no silent fallback."""
    for root, what in ((data_dir, "--data-dir"), (os.environ.get("VAEKIT_DATA"), "$VAEKIT_DATA")):
        if root and not Path(root).expanduser().is_dir():
            looked = ", ".join(map(str, search_dirs(dataset, data_dir)))
            raise DataError(f"{root}: this folder does not exist ({what}); looked for {dataset} in: {looked}")


def locate(dataset: str, remote: RemoteFile, data_dir, mirrors: list[str], download: bool = True,
           identify=None) -> Path:
    """Return a verified local path for ``remote`` (also accepting a gzipped copy), downloading it if needed.

    ``identify(sha256)`` names the file a wrong checksum belongs to (e.g. "MNIST's t10k-images-idx3-ubyte.gz").
    """
    check_roots(dataset, data_dir)
    dirs = search_dirs(dataset, data_dir)
    for d in dirs:
        for name in (remote.name, remote.name + ".gz"):
            if (d / name).is_file():
                verify(d / name, remote, dataset, identify)
                return d / name
    looked = ", ".join(map(str, dirs))
    if not download:
        raise DataError(f"{remote.name}: not found in {looked}")
    target = cache_dir() / dataset / remote.name
    try:
        fetch(remote, target, mirrors)
    except DataError as e:
        raise DataError(f"{e}; looked in: {looked}") from None
    _remember(target, remote.sha256)
    return target


def file_sha256(path: Path, gunzip: bool) -> tuple[str, int]:
    """SHA-256 and byte count of a file's contents (decompressed first when ``gunzip``), read in 1 MiB chunks."""
    digest, n = hashlib.sha256(), 0
    try:
        with (gzip.open(path, "rb") if gunzip else open(path, "rb")) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                n += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt or truncated gzip ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return digest.hexdigest(), n


def verify(path: Path, remote: RemoteFile, dataset: str, identify=None) -> None:
    """Refuse ``path`` unless its contents have ``remote``'s SHA-256 (remembered by size and mtime)."""
    if _known_good(path, remote.sha256):
        return
    # remote.sha256 is of the file as served; a ".gz" copy of a plain file is checked by its contents
    gunzip = path.name.endswith(".gz") and not remote.name.endswith(".gz")
    sha, n = file_sha256(path, gunzip)
    if sha == remote.sha256:
        _remember(path, sha)
        return
    other = identify(sha) if identify else None
    if other:
        raise DataError(f"{path}: this is {other}, not {dataset}'s {remote.name} (by SHA-256); point --data-dir "
                        f"at the {dataset} files or at a folder holding {dataset}/")
    size = f"{n} bytes{' uncompressed' if gunzip else ''} where the real file has {remote.size}"
    hint = " (truncated?)" if n < remote.size else ""
    raise DataError(f"{path}: not {dataset}'s {remote.name}: its SHA-256 {sha[:12]}... is not the known "
                    f"{remote.sha256[:12]}...; it holds {size}{hint}")


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _read_verified() -> dict:
    try:
        return json.loads((cache_dir() / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _known_good(path: Path, sha256: str) -> bool:
    record = _read_verified().get(str(path.resolve()))
    return record is not None and record == [*_stamp(path), sha256]


def _remember(path: Path, sha256: str) -> None:
    """Record a verified file; a cache that cannot be written only means hashing again next time."""
    records = _read_verified()
    records[str(path.resolve())] = [*_stamp(path), sha256]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{VERIFIED_FILE}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(records, f)
        os.replace(tmp, folder / VERIFIED_FILE)
    except OSError:
        pass


def fetch(remote: RemoteFile, target: Path, mirrors: list[str], timeout: float = 30.0) -> None:
    """Download ``remote`` to ``target`` from the first mirror that serves bytes with the right SHA-256."""
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + remote.name
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out, \
                    tqdm(total=remote.size, unit="B", unit_scale=True, desc=remote.name, leave=False) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, ValueError) as e:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        if digest.hexdigest() != remote.sha256:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: checksum mismatch (sha256 {digest.hexdigest()[:12]}…, "
                            f"expected {remote.sha256[:12]}…), file removed")
            continue
        os.replace(tmp, target)
        return
    raise DataError(f"{remote.name}: download failed from every mirror: " + "; ".join(failures))
