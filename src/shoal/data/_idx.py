"""MNIST-style IDX files: the parser, the folder loader, and the optional download."""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from pathlib import Path

import numpy as np

from shoal._errors import ConfigError
from shoal.data._dataset import Dataset, from_arrays

__all__ = ["IDX_SETS", "find_idx_files", "load_idx_folder", "read_idx"]

logger = logging.getLogger(__name__)

# name -> (mirror URL, default folder). The mirrors serve the four files gzipped.
IDX_SETS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", Path("data") / "mnist"),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        Path("data") / "fashion-mnist",
    ),
}
SPLITS = ("train", "t10k")  # concatenated in this order
DOWNLOAD_TIMEOUT_S = 20

# IDX type byte -> big-endian dtype (the format allows these six; MNIST uses 0x08).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a NumPy array.

    The header is two zero bytes, a type byte (``0x08`` = uint8), the number of dimensions, then
    each dimension as a big-endian uint32. Gzip is recognised by the ``.gz`` extension or by
    the gzip magic bytes.

    Args:
        path: The file, e.g. ``data/mnist/t10k-images-idx3-ubyte.gz``.

    Returns:
        An array of the shape and type the header declares, in native byte order.

    Raises:
        ConfigError: The file is unreadable, not IDX, or shorter/longer than its header says.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"Could not read the IDX file '{path}': {exc.strerror or exc}.") from None
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConfigError(
                f"The IDX file '{path}' is not a valid gzip file ({exc}); it may be truncated. "
                f"Download it again or replace it."
            ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(
            f"The file '{path}' is not an IDX file: it must start with the magic bytes "
            f"00 00 08 followed by the number of dimensions. Got {raw[:4].hex(' ') or 'nothing'} "
            f"instead; the file may be corrupt or of another format."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ConfigError(
            f"The IDX file '{path}' has a truncated header ({ndim} dimensions declared, "
            f"{len(raw)} bytes in all). Download it again or replace it."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        state = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise ConfigError(
            f"The IDX file '{path}' is {state}: its header declares shape {shape} "
            f"({expected} data bytes) but it holds {len(raw) - header}. Download it again or "
            f"replace it."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _candidates(split: str, kind: str) -> list[str]:
    # Standard names, plus the "train-images.idx3-ubyte" spelling some mirrors use.
    dims = "3" if kind == "images" else "1"
    names = [f"{split}-{kind}-idx{dims}-ubyte", f"{split}-{kind}.idx{dims}-ubyte"]
    return [n + ext for n in names for ext in (".gz", "")]


def find_idx_files(folder: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """For each split (train, t10k): the images and labels files found in ``folder``, or None."""
    found = {}
    for split in SPLITS:
        pair = []
        for kind in ("images", "labels"):
            hits = [folder / n for n in _candidates(split, kind) if (folder / n).is_file()]
            pair.append(hits[0] if hits else None)
        found[split] = (pair[0], pair[1])
    return found


def has_idx_files(folder: Path) -> bool:
    """Whether ``folder`` holds at least one IDX images file."""
    return any(images for images, _ in find_idx_files(folder).values())


def load_idx_folder(
    folder: str | os.PathLike, *, name: str, download: bool = False, url: str | None = None
) -> Dataset:
    """Load the train and/or t10k IDX files of ``folder`` as one image classification set.

    Args:
        folder: The folder holding ``train-images-idx3-ubyte[.gz]`` etc.
        name: The data set's name (``"mnist"``, ``"fashion-mnist"`` or the folder's name).
        download: Fetch the missing files from ``url`` first.
        url: Mirror base URL (None: the set cannot be downloaded).

    Returns:
        A data set with X of shape ``[n, 1, H, W]`` (raw pixel values) and train before t10k;
        with both files, the t10k rows are its ``test_rows`` (see ``official_test``).
    """
    folder = Path(folder).expanduser()
    if download and url is not None:
        _download_missing(folder, url, name)
    found = find_idx_files(folder)
    images, labels = [], []
    for split, (img_path, lbl_path) in found.items():
        if img_path is None and lbl_path is None:
            continue
        if img_path is None or lbl_path is None:
            have, lack = (img_path, "labels") if lbl_path is None else (lbl_path, "images")
            raise ConfigError(
                f"Found '{have}' but no matching {lack} file in '{folder}' (looked for "
                f"{' or '.join(_candidates(split, lack)[1::2])}[.gz]). Put both files of the "
                f"'{split}' split there, or remove the lone one."
            )
        X, y = read_idx(img_path), read_idx(lbl_path)
        if X.ndim not in (3, 4) or y.ndim != 1 or len(X) != len(y):
            raise ConfigError(
                f"The IDX files '{img_path.name}' and '{lbl_path.name}' in '{folder}' do not "
                f"match: images must be [n, H, W] and labels [n]. Got shapes {X.shape} and "
                f"{y.shape} instead."
            )
        images.append(X if X.ndim == 4 else X[:, None])  # keep a channel axis
        labels.append(y)
    if not images:
        raise ConfigError(_missing_message(folder, name, url))
    shapes = {x.shape[1:] for x in images}
    if len(shapes) > 1:
        raise ConfigError(
            f"The train and t10k images in '{folder}' differ in size ({sorted(shapes)}). "
            f"Keep only files of one data set in the folder."
        )
    X = np.concatenate(images) if len(images) > 1 else images[0]
    y = np.concatenate(labels) if len(labels) > 1 else labels[0]
    # both files: t10k is the set's own test part (held out only with official_test=True)
    test_rows = np.arange(len(images[0]), len(X)) if len(images) > 1 else None
    return from_arrays(X, y.astype(np.int64), task="classification", name=name, test_rows=test_rows)


def _missing_message(folder: Path, name: str, url: str | None) -> str:
    wanted = ", ".join(f"{s}-images-idx3-ubyte[.gz] + {s}-labels-idx1-ubyte[.gz]" for s in SPLITS)
    where = f"'{folder}'" + ("" if folder.is_dir() else " (the folder does not exist)")
    fix = (
        "Pass --download (download=True) on a machine with internet access, or put the files "
        "there"
        if url is not None
        else "Put the files there"
    )
    return (
        f"No {name} IDX files found in {where}: looked for {wanted} (either split is enough). "
        f"{fix}, or name another folder as '{name}:/path/to/folder'."
    )


def _download_missing(folder: Path, url: str, name: str) -> None:
    import urllib.request  # only here: most runs never download

    for split in SPLITS:
        for kind in ("images", "labels"):
            if any((folder / n).is_file() for n in _candidates(split, kind)):
                continue
            file = _candidates(split, kind)[0]  # the standard gzipped name
            dest = folder / file
            logger.info("downloading %s%s to %s", url, file, dest)
            try:
                with urllib.request.urlopen(url + file, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    payload = response.read()
            except Exception as exc:  # URLError, timeouts, HTTP errors, resets: all mean the same
                reason = getattr(exc, "reason", None) or exc
                raise ConfigError(
                    f"Could not download {name} from {url + file} ({reason}); this machine may "
                    f"have no network: put the IDX files in '{folder}' yourself."
                ) from None
            try:
                folder.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                part.write_bytes(payload)
                os.replace(part, dest)  # no half-written file under the real name
            except OSError as exc:
                raise ConfigError(
                    f"Downloaded {file} but could not write it to '{folder}' "
                    f"({exc.strerror or exc}). Pass a writable folder as data_dir (or "
                    f"'{name}:/path/to/folder')."
                ) from None
