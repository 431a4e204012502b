"""Files from the browser: single uploads and zip archives, written only inside dest_dir.

Nothing a browser sends is trusted: names are reduced to safe basenames (or safe relative
paths for archive members), every image is fully decoded (engine.intake.images.probe_image) before it
becomes visible under its final name, and each file appears atomically (temp file in the same
folder, fsync, then a no-clobber link/rename).

Zip decisions:
- Whole archive rejected (UserError naming the archive; nothing written): not a zip, more than
  `max_members` members, or declared uncompressed total above `max_total_bytes`; and, should a
  member ever inflate past its declared size while streaming, everything this call wrote is
  removed before the UserError (zipfile stops at the declared size and fails the CRC, which we
  report per member; the counter is a second line of defence).
- One member skipped (Skipped(member name, reason)), the rest extracted: unsafe name (absolute,
  drive letter, '..'), symlink member, encrypted, compression ratio above `max_ratio` (an
  all-zero BMP can be legitimate, so one such member does not condemn the archive), non-image
  extension, empty, corrupt/truncated image, corrupt member (bad CRC). Folder entries, hidden
  files and __MACOSX/ are ignored silently.
- Archive folders are kept (sanitised), so a zipped seed/mvtec dataset can be scanned as is;
  find_dataset_root() steps into a single top folder.
- A name already taken gets "-1", "-2"... unless the existing file has the same bytes, in which
  case that file is returned and nothing new is written.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from engine.errors import InputFileError, UserError
from engine.intake.images import IMAGE_EXTENSIONS, probe_image, sha256_file
from engine.intake.importer import Skipped

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHUNK = 1 << 20
_IGNORED = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


class _Overflow(Exception):
    """A member inflated past its declared size."""


def sanitize_name(name: str) -> str:
    """Basename only, ASCII letters/digits/._- (others -> '_'), no leading dot, <= 120 chars."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    suffix = PurePosixPath(base).suffix if base not in ("", ".", "..") else ""
    stem = base[: len(base) - len(suffix)]
    stem = _UNSAFE.sub("_", stem).strip("._-")[:100] or "upload"
    suffix = _UNSAFE.sub("_", suffix.lower())[:10]
    return stem + suffix


def _extension_problem(name: str) -> str | None:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return None
    return f"not an image file (extension {suffix})" if suffix else "not an image file (no extension)"


def _stage(chunks: Iterable[bytes], folder: Path, limit: int | None = None) -> Path:
    """Write chunks to a hidden temp file in `folder` (fsynced); limit = max bytes allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            n = 0
            for chunk in chunks:
                n += len(chunk)
                if limit is not None and n > limit:
                    raise _Overflow(f"inflates past its declared size ({limit} bytes)")
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _place(tmp: Path, target: Path, sha256: str) -> tuple[Path, bool]:
    """Give the validated temp file its final name without overwriting anything.

    Returns (path, created); an existing file with the same bytes is reused (created=False).
    """
    stem, suffix = target.stem, target.suffix
    for i in itertools.count():
        cand = target if i == 0 else target.with_name(f"{stem}-{i}{suffix}")
        if cand.exists() or cand.is_symlink():
            if cand.is_file() and not cand.is_symlink() and sha256_file(cand) == sha256:
                tmp.unlink(missing_ok=True)
                return cand, False
            continue
        try:
            os.link(tmp, cand)  # fails if cand appeared meanwhile: never clobbers
        except FileExistsError:
            continue
        except OSError:  # filesystem without hard links
            if cand.exists():
                continue
            os.replace(tmp, cand)
            return cand, True
        tmp.unlink(missing_ok=True)
        return cand, True
    raise AssertionError("unreachable")


def _validate_and_place(tmp: Path, target: Path, created: list[Path]) -> Path:
    """probe_image the staged file (InputFileError -> caller skips it), then place it."""
    try:
        info = probe_image(tmp)
    except InputFileError:
        tmp.unlink(missing_ok=True)
        raise
    path, new = _place(tmp, target, info.sha256)
    if new:
        created.append(path)
    return path


def _cleanup(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def save_uploaded_files(files: list[tuple[str, bytes]],
                        dest_dir: Path) -> tuple[list[Path], list[Skipped]]:
    """Save browser uploads (name, bytes) into dest_dir; bad files are Skipped by their name.

    A write error (full disk) removes what this call created and raises UserError.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    skipped: list[Skipped] = []
    created: list[Path] = []
    for name, data in files:
        problem = _extension_problem(name) or (None if data else "empty file (0 bytes)")
        if problem:
            skipped.append(Skipped(name, problem))
            continue
        try:
            tmp = _stage([data], dest_dir)
            saved.append(_validate_and_place(tmp, dest_dir / sanitize_name(name), created))
        except InputFileError as e:
            skipped.append(Skipped(name, e.reason))
        except OSError as e:
            _cleanup(created)
            raise UserError(f"{name}: cannot save upload: {e.strerror or e}") from None
    return saved, skipped


def _member_problem(info: zipfile.ZipInfo, max_ratio: float) -> str | None:
    """Why a member must not be extracted ("" = ignore silently, None = fine)."""
    raw = info.filename
    name = raw.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if info.is_dir() or not parts:
        return ""
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "unsafe path in archive (absolute path)"
    if ".." in parts:
        return "unsafe path in archive ('..' escapes the destination)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "unsafe member in archive (symbolic link)"
    if any(p.startswith(".") or p in _IGNORED for p in parts):
        return ""
    if info.flag_bits & 0x1:
        return "encrypted member (password-protected archives are not supported)"
    ext = _extension_problem(name)
    if ext:
        return ext
    if info.file_size == 0:
        return "empty file (0 bytes)"
    ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
    if ratio > max_ratio:
        return (f"compression ratio {ratio:.0f}:1 above the limit {max_ratio:.0f}:1 "
                "(possible zip bomb)")
    return None


def _member_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterable[bytes]:
    with zf.open(info) as src:
        while chunk := src.read(_CHUNK):
            yield chunk


def extract_zip(data: bytes | Path, dest_dir: Path, max_total_bytes: int = 2 * 1024**3,
                max_members: int = 20000, max_ratio: float = 200.0,
                name: str | None = None) -> tuple[list[Path], list[Skipped]]:
    """Extract the image members of a zip into dest_dir (folders kept); see module docstring.

    `name` is how the archive is called in errors (default: the file name, or "uploaded zip").
    """
    archive = name or (Path(data).name if isinstance(data, (str, Path)) else "uploaded zip")
    dest_dir = Path(dest_dir)
    try:
        zf = zipfile.ZipFile(Path(data) if isinstance(data, (str, Path)) else io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"{archive}: not a zip archive ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise UserError(f"{archive}: {len(infos)} members, more than the limit "
                            f"{max_members} (possible zip bomb)")
        total = sum(i.file_size for i in infos)
        if total > max_total_bytes:
            raise UserError(f"{archive}: declares {total} bytes uncompressed, more than the "
                            f"limit {max_total_bytes} (possible zip bomb)")
        dest_dir.mkdir(parents=True, exist_ok=True)
        root = dest_dir.resolve()
        saved: list[Path] = []
        skipped: list[Skipped] = []
        created: list[Path] = []
        for info in infos:
            problem = _member_problem(info, max_ratio)
            if problem == "":
                continue
            if problem:
                skipped.append(Skipped(info.filename, problem))
                continue
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")]
            target = root.joinpath(*[sanitize_name(p) for p in parts[:-1]],
                                   sanitize_name(parts[-1]))
            if not target.parent.resolve().is_relative_to(root):  # e.g. a symlinked subfolder
                skipped.append(Skipped(info.filename, "unsafe path in archive (leaves the "
                                                      "destination folder)"))
                continue
            try:
                tmp = _stage(_member_chunks(zf, info), target.parent, limit=info.file_size)
                saved.append(_validate_and_place(tmp, target, created))
            except InputFileError as e:
                skipped.append(Skipped(info.filename, e.reason))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
                    EOFError, RuntimeError) as e:
                skipped.append(Skipped(info.filename, f"corrupt member in archive ({e})"))
            except _Overflow as e:
                _cleanup(created)
                raise UserError(f"{archive}: member {info.filename} {e} "
                                "(possible zip bomb); nothing extracted") from None
            except OSError as e:
                _cleanup(created)
                raise UserError(f"{archive}: cannot write {info.filename}: "
                                f"{e.strerror or e}; nothing extracted") from None
    return saved, skipped


def find_dataset_root(folder: Path) -> Path:
    """Step into single top folders (a zip of 'mydata/train/ok/...') to reach the dataset."""
    folder = Path(folder)
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")
                   and e.name not in _IGNORED]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            return folder
        folder = entries[0]
