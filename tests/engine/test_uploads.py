"""Browser uploads and zips: only validated images land, only inside dest_dir."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.intake.importer import scan_folder
from engine.intake.uploads import extract_zip, find_dataset_root, sanitize_name, save_uploaded_files
from tests import fixtures_files as ff


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _reasons(skipped) -> dict[str, str]:
    return {s.path: s.reason for s in skipped}


def test_sanitize_name() -> None:
    assert sanitize_name("../../etc/passwd.png") == "passwd.png"
    assert sanitize_name("C:\\Users\\me\\Pièce 1.PNG") == "Piece_1.png"
    assert sanitize_name(".hidden.png") == "hidden.png"
    assert sanitize_name("$$$.jpg") == "upload.jpg"


def test_save_uploaded_files(tmp_path: Path) -> None:
    good = ff.good_png_bytes(seed=1)
    files = [("../../evil/a.png", good), ("a.png", ff.good_png_bytes(seed=2)),
             ("notes.txt", b"hello"), ("empty.jpg", b""),
             ("fake.png", b"not an image"), ("again.png", good), ("a.png", good)]
    dest = tmp_path / "up"
    saved, skipped = save_uploaded_files(files, dest)
    assert [p.name for p in saved] == ["a.png", "a-1.png", "again.png", "a.png"]
    assert saved[3] == saved[0]  # same name, same bytes: reused, not duplicated
    assert _reasons(skipped) == {"notes.txt": "not an image file (extension .txt)",
                                 "empty.jpg": "empty file (0 bytes)",
                                 "fake.png": "not an image (unrecognised format)"}
    assert _files(dest) == ["a-1.png", "a.png", "again.png"]  # no temp files left
    assert _files(tmp_path) == ["up/a-1.png", "up/a.png", "up/again.png"]


def test_truncated_upload_skipped(tmp_path: Path) -> None:
    data = ff.make_truncated_jpeg(tmp_path / "t.jpg").read_bytes()
    saved, skipped = save_uploaded_files([("t.jpg", data)], tmp_path / "up")
    assert saved == [] and skipped[0].reason.startswith("truncated or corrupt image")
    assert _files(tmp_path / "up") == []


def test_zip_slip_rejected_by_name(tmp_path: Path) -> None:
    z = ff.make_zip_slip(tmp_path / "slip.zip")
    dest = tmp_path / "box" / "dest"
    saved, skipped = extract_zip(z, dest)
    assert [p.relative_to(dest).as_posix() for p in saved] == ["good/ok.png"]
    r = _reasons(skipped)
    assert r["../evil.png"].startswith("unsafe path in archive")
    assert r["/tmp/abs_evil.png"] == "unsafe path in archive (absolute path)"
    assert r["a/../../evil2.png"].startswith("unsafe path in archive")
    assert r["link.png"] == "unsafe member in archive (symbolic link)"
    assert _files(tmp_path / "box") == ["dest/good/ok.png"]
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/abs_evil.png").exists()


def test_zip_bomb_member_skipped_by_ratio(tmp_path: Path) -> None:
    z = ff.make_zip_bomb(tmp_path / "bomb.zip", member_bytes=8 * 1024**2)
    saved, skipped = extract_zip(z, tmp_path / "d")
    assert saved == []
    assert skipped[0].path == "bomb_0.bmp"
    assert "compression ratio" in skipped[0].reason and "zip bomb" in skipped[0].reason


def test_zip_bomb_total_rejects_archive(tmp_path: Path) -> None:
    z = ff.make_zip_bomb(tmp_path / "bomb.zip", member_bytes=2 * 1024**2, members=3)
    with pytest.raises(UserError) as e:
        extract_zip(z, tmp_path / "d", max_total_bytes=4 * 1024**2)
    assert str(e.value).startswith("bomb.zip: declares 6291456 bytes uncompressed")
    assert not (tmp_path / "d").exists()


def test_too_many_members_rejects_archive(tmp_path: Path) -> None:
    z = ff.make_zip(tmp_path / "many.zip", {f"{i}.png": ff.good_png_bytes(seed=i)
                                             for i in range(5)})
    with pytest.raises(UserError, match="many.zip: 5 members, more than the limit 3"):
        extract_zip(z, tmp_path / "d", max_members=3)


def test_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="^upload.zip: not a zip archive"):
        extract_zip(b"PK but not really", tmp_path / "d", name="upload.zip")


def test_zip_members_validated(tmp_path: Path) -> None:
    trunc = ff.make_truncated_jpeg(tmp_path / "t.jpg").read_bytes()
    z = ff.make_zip(tmp_path / "m.zip", {
        "ds/train/ok/a.png": ff.good_png_bytes(seed=1),
        "ds/train/ok/b.jpg": trunc,
        "ds/readme.txt": b"hello",
        "ds/inner.zip": b"PK..",
        "__MACOSX/ds/._a.png": b"junk",
        "ds/.DS_Store": b"junk",
        "ds/empty.png": b"",
    })
    saved, skipped = extract_zip(z.read_bytes(), tmp_path / "d")
    assert [p.name for p in saved] == ["a.png"]
    r = _reasons(skipped)
    assert r["ds/train/ok/b.jpg"].startswith("truncated or corrupt image")
    assert r["ds/readme.txt"] == "not an image file (extension .txt)"
    assert r["ds/inner.zip"] == "not an image file (extension .zip)"
    assert r["ds/empty.png"] == "empty file (0 bytes)"
    assert len(r) == 4
    assert _files(tmp_path / "d") == ["ds/train/ok/a.png"]


def test_lying_member_size(tmp_path: Path) -> None:
    """A member that inflates past its declared size never writes more than declared."""
    good = ff.good_png_bytes(size=(64, 64), seed=3)
    z = ff.make_zip(tmp_path / "lie.zip", {"x.png": good})
    raw = bytearray(z.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # central directory entry: uncompressed size at +24
    raw[cd + 24: cd + 28] = (100).to_bytes(4, "little")
    saved, skipped = extract_zip(bytes(raw), tmp_path / "d")
    assert saved == [] and skipped[0].path == "x.png"
    assert _files(tmp_path / "d") == []


def test_zipped_dataset_scans(tmp_path: Path) -> None:
    src = ff.make_seed_dataset(tmp_path / "src" / "mydata", n_train=3, defects={"s": 2})
    members = {p.relative_to(src.parent).as_posix(): p.read_bytes()
               for p in sorted(src.rglob("*")) if p.is_file()}
    z = ff.make_zip(tmp_path / "ds.zip", members)
    dest = tmp_path / "d"
    saved, skipped = extract_zip(z, dest)
    assert skipped == [] and len(saved) == len(members)
    root = find_dataset_root(dest)
    assert root == dest / "mydata"
    plan = scan_folder(root)
    assert (plan.layout, plan.train_ok, plan.test_nok, plan.masks) == ("seed", 3, 2, 2)
    # extracting again: same bytes at the same names are reused, nothing duplicated
    saved2, _ = extract_zip(z, dest)
    assert saved2 == saved and len(_files(dest)) == len(members)


def test_zip_of_zip_bytes_identity(tmp_path: Path) -> None:
    z = ff.make_zip(tmp_path / "u.zip", {"Über Teil 1.PNG": ff.good_png_bytes(seed=4)})
    saved, _ = extract_zip(z, tmp_path / "d")
    assert [p.name for p in saved] == ["Uber_Teil_1.png"]
    with zipfile.ZipFile(z) as zf:
        assert saved[0].read_bytes() == zf.read("Über Teil 1.PNG")
