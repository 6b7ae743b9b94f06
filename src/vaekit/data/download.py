"""Find dataset files locally, or download them into the cache with SHA-256 verification.

Search order for a file: ``data_dir`` (the dataset folder itself, or a root holding ``<dataset>/``),
then ``$VAEKIT_DATA`` (same two forms), then the cache (``$VAEKIT_CACHE`` or ``~/.cache/vaekit``).
A download is written to a temporary name beside its target and renamed only after its checksum
matches, so a partial or mismatching download never stays in the cache.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError


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
    dirs: list[Path] = []
    for root in (data_dir, os.environ.get("VAEKIT_DATA")):
        if root:
            dirs += [Path(root), Path(root) / dataset]
    dirs.append(cache_dir() / dataset)
    return dirs


def locate(dataset: str, remote: RemoteFile, data_dir, mirrors: list[str], download: bool = True) -> Path:
    """Return a local path for ``remote`` (also accepting a gzipped copy), downloading it if needed."""
    for d in search_dirs(dataset, data_dir):
        for name in (remote.name, remote.name + ".gz"):
            if (d / name).is_file():
                return d / name
    if not download:
        raise DataError(f"{remote.name}: not found in {', '.join(map(str, search_dirs(dataset, data_dir)))}")
    target = cache_dir() / dataset / remote.name
    fetch(remote, target, mirrors)
    return target


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
