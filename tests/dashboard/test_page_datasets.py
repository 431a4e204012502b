"""AppTests of the Datasets page on a workspace holding the tiny demo (10 train OK, 4 test OK, 6 NOK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import datasets as dq
from db import masks as mq
from tests import fixtures_files as ff
from tests.dashboard.page_helpers import assert_ok, import_tiny, open_page, sessions, texts


@pytest.fixture
def tiny_ws(home: Path, tiny_demo: Path) -> Path:
    import_tiny(tiny_demo)
    return home


def test_counts_and_a_grid_of_cached_thumbnails(tiny_ws: Path) -> None:
    at = open_page("datasets")
    table = at.dataframe[0].value
    row = table[table["Dataset"] == "tiny"].iloc[0]
    assert (row["Train OK"], row["Test OK"], row["Test NOK"], row["Masks"], row["Images"]) == (10, 4, 6, 6, 20)
    images = at.get("image")
    assert len(images) == 20  # every image on one page (48 per page)
    thumbs = list((tiny_ws / "cache" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == 20  # from the disk cache; NOK ones with their mask tinted
    assert sum("-m" in t.name for t in thumbs) == 6
    assert "Page **1** of 1" in texts(at) or "Page <b>1</b> of 1" in texts(at)


def test_filters_select_nok_with_mask(tiny_ws: Path) -> None:
    at = open_page("datasets")
    at.selectbox(key="datasets_filters_label").set_value("NOK").run()
    assert len(at.get("image")) == 6
    at.selectbox(key="datasets_filters_split").set_value("Train").run()
    assert_ok(at)
    assert len(at.get("image")) == 0 and "No images match." in texts(at)
    at.selectbox(key="datasets_filters_split").set_value("Test").run()
    at.selectbox(key="datasets_filters_mask").set_value("Without mask").run()
    assert len(at.get("image")) == 0


def test_pagination_of_48(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(50):
        ff.make_good_png(folder / f"img_{i:03d}.png", (32, 32), seed=1000 + i)
    from engine.cli.commands import import_folder

    import_folder(folder, "many", "flat")
    at = open_page("datasets")
    assert len(at.get("image")) == 48
    at.button(key="datasets_page_next").click().run()
    assert len(at.get("image")) == 2
    assert "Page <b>2</b> of 2 · 49–50 of 50" in texts(at)


def test_detail_shows_mask_and_relabel_is_persisted(tiny_ws: Path) -> None:
    with sessions().begin() as s:
        ds = dq.get_dataset(s, "tiny")
        img = dq.list_images(s, ds.id, label="nok")[0]
        assert mq.current_mask(s, img.id) is not None
    at = open_page("datasets")
    at.button(key=f"datasets_grid_tile_{img.id}").click().run()
    assert_ok(at)
    assert at.query_params["image"] == [str(img.id)] or at.query_params["image"] == str(img.id)
    assert any("mask in red" in (c or "") for i in at.get("image") for c in i.captions)
    assert "version 1" in texts(at)
    at.radio[0].set_value("ok")  # Label
    at.radio[1].set_value("train")  # Split
    at.button[[b.label for b in at.button].index("Save changes")].click().run()
    assert_ok(at)
    with sessions().begin() as s:
        after = dq.get_image(s, img.id)
        assert (after.label, after.split, after.defect_type) == ("ok", "train", None)
    table = at.dataframe[0].value
    assert table[table["Dataset"] == "tiny"].iloc[0]["Train OK"] == 11


def test_move_to_training_and_deep_link(tiny_ws: Path) -> None:
    with sessions().begin() as s:
        ds = dq.get_dataset(s, "tiny")
        img = dq.list_images(s, ds.id, split="test", label="ok")[0]
    at = open_page("datasets", query={"dataset": "tiny", "image": str(img.id)})
    labels = [b.label for b in at.button]
    assert "Move to training" in labels, labels
    at.button[labels.index("Move to training")].click().run()
    assert_ok(at)
    with sessions().begin() as s:
        after = dq.get_image(s, img.id)
        assert (after.label, after.split) == ("ok", "train")


def test_import_folder_reports_each_skipped_file(tiny_ws: Path) -> None:
    folder = tiny_ws / "incoming"  # the workspace is an allowed import root by default
    ff.make_good_png(folder / "good_1.png", seed=5)
    ff.make_16bit_png(folder / "deep.png")
    ff.make_truncated_jpeg(folder / "broken.jpg")
    ff.make_zero_byte(folder / "empty.png")
    at = open_page("datasets")
    at.text_input(key="import_folder_folder").input(str(folder))
    assert at.text_input(key="import_folder_name").value in ("", None)  # empty: the folder's name is used
    at.selectbox(key="import_folder_layout").set_value("flat")
    at.button[[b.label for b in at.button].index("Import folder")].click().run()
    assert_ok(at)
    assert "Dataset **incoming** (flat layout)" in texts(at) and "2 unlabelled" in texts(at)
    skipped = at.dataframe[1].value
    reasons = dict(zip(skipped["File"], skipped["Reason"]))
    assert set(reasons) == {"broken.jpg", "empty.png"}, reasons
    assert "trunc" in reasons["broken.jpg"].lower() or "corrupt" in reasons["broken.jpg"].lower()
    assert "0 bytes" in reasons["empty.png"]
    with sessions().begin() as s:
        assert dq.count_images(s, dq.get_dataset(s, "incoming").id) == 2


def test_import_refuses_a_folder_outside_the_import_roots(tiny_ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    ff.make_good_png(outside / "a.png")
    at = open_page("datasets")
    at.text_input(key="import_folder_folder").input(str(outside))
    at.text_input(key="import_folder_name").input("elsewhere")
    at.button[[b.label for b in at.button].index("Import folder")].click().run()
    assert_ok(at)
    assert any("not inside an allowed import root" in e.value for e in at.error)


def test_upload_images_and_a_zip_with_unsafe_members(tiny_ws: Path, tmp_path: Path) -> None:
    slip = ff.make_zip_slip(tmp_path / "parts.zip").read_bytes()
    at = open_page("datasets")
    at.file_uploader(key="import_upload_files").set_value([
        ("new_ok.png", ff.good_png_bytes(seed=21), "image/png"),
        ("notes.png", b"this is text", "image/png"),
        ("parts.zip", slip, "application/zip"),
    ])
    at.text_input(key="import_upload_name").input("uploaded")
    at.selectbox(key="import_upload_split").set_value("train")
    at.selectbox(key="import_upload_label").set_value("ok")
    at.button[[b.label for b in at.button].index("Upload and import")].click().run()
    assert_ok(at)
    reasons = dict(zip(at.dataframe[1].value["File"], at.dataframe[1].value["Reason"]))
    assert "notes.png" in reasons
    assert "parts.zip: ../evil.png" in reasons and "unsafe path" in reasons["parts.zip: ../evil.png"]
    assert "parts.zip: link.png" in reasons and "symbolic link" in reasons["parts.zip: link.png"]
    with sessions().begin() as s:
        ds = dq.get_dataset(s, "uploaded")
        imgs = dq.list_images(s, ds.id)
    assert len(imgs) == 2 and {(i.split, i.label, i.source) for i in imgs} == {("train", "ok", "upload")}
    assert all(Path(i.path).is_relative_to(tiny_ws / "uploads" / "uploaded") for i in imgs)


def test_region_of_interest_editor_opens_in_its_expander(tiny_ws: Path) -> None:
    at = open_page("datasets")
    assert "Draw on" not in [s.label for s in at.selectbox]  # not built while closed
    at.session_state["datasets_roi_open"] = True
    at.run()
    assert_ok(at)
    assert "Draw on" in [s.label for s in at.selectbox]


def test_files_gone_since_import_are_counted_and_badged_as_missing(home: Path, tmp_path: Path, tiny_demo: Path) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_demo, folder)
    import_tiny(folder)
    gone = min((folder / "train" / "ok").iterdir())
    gone.unlink()
    report = import_tiny(folder)  # the re-import marks it
    assert [m["path"] for m in report["missing"]] == [str(gone.resolve())]
    at = open_page("datasets")
    assert_ok(at)
    row = at.dataframe[0].value.iloc[0]
    assert (row["Train OK"], row["Images"], row["Missing"]) == (9, 19, 1)
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert sum(":red-badge[File missing]" in b for b in badges) == 1 and len(badges) == 20
    assert "1 missing or changed" in texts(at)
