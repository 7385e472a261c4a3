"""Each page of the web app, driven through ``streamlit.testing.v1.AppTest`` on real small indexes."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from helpers import TIMEOUT, have_samples, no_exception, page, png_bytes, texts
from lookalike.data.photos import load_photo
from lookalike.retrieval.models import DEFAULT_EMBEDDER
from PIL import Image

pytestmark = pytest.mark.slow  # runs every Streamlit page

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

# ---------------------------------------------------------------------------- Search
def first_result(at) -> str:
    hits = [m.value for m in at.markdown if m.value.startswith("**#1**")]
    assert hits, "no results grid"
    return hits[0]


def test_search_pick_indexed_image_and_click_result(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    no_exception(at)
    assert at.title[0].value == "Search"
    assert any("Upload an image" in i.value for i in at.info)
    coffee = str(image_tree / "photos" / "coffee.png")
    at.selectbox(key="q_pick").set_value(coffee).run()
    no_exception(at)
    top = first_result(at)
    assert "coffee.png" in top and "1.000" in top  # the image itself comes first
    assert "photos" in top
    n_results = sum(1 for m in at.markdown if m.value.startswith("**#"))
    assert n_results >= 3
    # hide the query itself: another image comes first
    at.checkbox(key="exclude_self").check().run()
    assert "coffee.png" not in first_result(at)
    at.checkbox(key="exclude_self").uncheck().run()
    # clicking "Search with this" on result #2 searches with that image
    second = [m.value for m in at.markdown if m.value.startswith("**#2**")][0]
    name2 = second.split("`")[1]
    at.button(key="use-2").click().run()
    no_exception(at)
    assert name2 in first_result(at) and "1.000" in first_result(at)
    # k slider limits the grid
    at.slider(key="k").set_value(2).run()
    assert sum(1 for m in at.markdown if m.value.startswith("**#")) == 2


def test_search_upload_finds_the_photo(tmp_path_factory, photo_dir, use_db):
    """Model quality matters here: efficientnet_lite0 finds the cat from a cropped, recompressed copy."""
    from lookalike.retrieval.engine import Engine

    db = tmp_path_factory.mktemp("uilite0") / "index"
    with Engine.open(db, model="efficientnet_lite0") as eng:
        eng.add([photo_dir], progress=False, workers=0, warn=None)
    use_db(db)
    im = load_photo("chelsea").convert("RGB")
    w, h = im.size
    im = im.crop((int(w * 0.08), int(h * 0.05), int(w * 0.95), int(h * 0.97))).resize((256, 192))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    at = page("search_page").run()
    at.file_uploader(key="q_upload").set_value(("cat.jpg", buf.getvalue(), "image/jpeg")).run()
    no_exception(at)
    assert "chelsea.png" in first_result(at)
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert any("Query: cat.jpg (256×192)" in c for c in caps), caps


def test_search_unreadable_and_oversized_uploads_give_messages(pixels_db, use_db):
    use_db(pixels_db, LOOKALIKE_MAX_UPLOAD_MB="0.05")
    at = page("search_page").run()
    at.file_uploader(key="q_upload").set_value(("notes.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")).run()
    no_exception(at)
    assert at.error and "Cannot read **notes.png**" in at.error[0].value
    assert not [m for m in at.markdown if m.value.startswith("**#1**")]
    big = png_bytes(Image.effect_noise((400, 400), 80))  # noise does not compress: > 50 KB
    assert len(big) > 0.05 * 1024 * 1024
    at.file_uploader(key="q_upload").set_value(("big.png", big, "image/png")).run()
    no_exception(at)
    assert at.error and "upload limit" in at.error[0].value


def test_search_refuses_paths_outside_the_roots(pixels_db, image_tree, tmp_path, use_db):
    use_db(pixels_db)
    outside = tmp_path / "secret.png"
    load_photo("camera").save(outside)
    at = page("search_page")
    at.session_state["query"] = {"kind": "indexed", "name": "secret.png", "path": str(outside)}
    at.run()
    no_exception(at)
    assert at.error and "outside the indexed folders" in at.error[0].value
    # a "../" path that starts inside a root but leads out is refused too
    sneaky = os.path.join(str(image_tree / "photos"), "..", "..", "..", *outside.parts[-3:])
    at.session_state["query"] = {"kind": "indexed", "name": "x", "path": sneaky}
    at.run()
    assert at.error and "outside the indexed folders" in at.error[0].value


def test_search_noisy_query_panel(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    at.selectbox(key="q_pick").set_value(str(image_tree / "photos" / "astronaut.png")).run()
    at.slider(key="noise_sigma").set_value(0.3).run()
    no_exception(at)
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert any("Noisy query (σ added = 0.30)" in c for c in caps), caps
    assert any("Query before the added noise" in c for c in caps)
    at.toggle(key="den_on").set_value(True).run()
    at.radio(key="den_method").set_value("classical").run()
    at.radio(key="den_sigma_mode").set_value("manual").run()
    at.slider(key="den_sigma").set_value(0.3).run()
    no_exception(at)
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    den = [c for c in caps if c.startswith("Denoised:")]
    assert den and "classical" in den[0] and "σ used = 0.300 (manual)" in den[0], caps
    top = first_result(at)
    assert "astronaut.png" in top  # the denoised photo still finds itself
    # auto sigma is estimated and reported
    at.radio(key="den_sigma_mode").set_value("auto").run()
    no_exception(at)
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert any("(estimated)" in c for c in caps if c.startswith("Denoised:"))
    # a 32x32 colour query is in the CIFAR-10 DDPM's domain: auto uses DDIM with it when it is shipped
    from lookalike.retrieval.denoise import shipped_models

    cifar = sorted((image_tree / "cifar10").rglob("*.png")) if (image_tree / "cifar10").exists() else []
    if cifar and "ddpm-cifar10" in shipped_models():
        at.selectbox(key="q_pick").set_value(str(cifar[0])).run()
        at.radio(key="den_method").set_value("auto").run()
        no_exception(at)
        caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
        assert any(c.startswith("Denoised: ddim") for c in caps), caps
        assert any("model: ddpm-cifar10" in c.value for c in at.caption)


# ---------------------------------------------------------------------------- Index
def finish_job(at, db):
    """Wait for the indexing job the page started on the server, then run the page again (as its refresh does)."""
    from lookalike.ui.jobs import RUNNER

    job = RUNNER.latest(db)
    assert job is not None, "the page started no job"
    RUNNER.wait(job.id, 300)
    return at.run()


def test_index_page_builds_updates_and_lists_skipped(image_tree, tmp_path, use_db):
    db = tmp_path / "newindex"
    use_db(db, LOOKALIKE_UI_ALLOW_WRITE="1", LOOKALIKE_UI_ALLOW_ROOTS=str(image_tree))
    at = page("index_page").run()
    no_exception(at)
    assert any("No index" in i.value for i in at.info)
    assert at.selectbox(key="index_model").value == DEFAULT_EMBEDDER == "ntxent-copies"  # preselected
    at.text_input(key="index_folder").input(str(tmp_path / "nope"))
    at.selectbox(key="index_model").set_value("pixels")
    [b for b in at.button if b.label == "Build / update index"][0].click().run()
    assert at.error and "not an existing folder" in at.error[0].value
    assert not (db / "vectors.faiss").exists()

    at.text_input(key="index_folder").input(str(image_tree))
    at.selectbox(key="index_model").set_value("pixels")
    [b for b in at.button if b.label == "Build / update index"][0].click().run()
    finish_job(at, db)
    no_exception(at)
    n_files = sum(1 for p in image_tree.rglob("*.png"))
    assert at.success and f"indexed {n_files}" in at.success[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == str(n_files) and metrics["Skipped"] == "1"
    table = at.dataframe[0].value
    assert list(table["file"]) == [str(image_tree / "photos" / "broken.jpg")]
    assert "not an image" in table["reason"][0]
    assert str(image_tree) in texts(at)

    # a new file, then "Update all indexed folders" embeds only it
    extra = image_tree / "photos" / "extra-rocket.png"
    load_photo("rocket").rotate(90, expand=True).save(extra)
    try:
        [b for b in at.button if b.label == "Update all indexed folders"][0].click().run()
        finish_job(at, db)
        no_exception(at)
        assert "indexed 1," in at.success[0].value and f"unchanged {n_files}" in at.success[0].value
        assert {m.label: m.value for m in at.metric}["Images"] == str(n_files + 1)
    finally:
        extra.unlink()


def test_index_page_read_only(pixels_db, use_db):
    use_db(pixels_db)  # the default: read-only
    at = page("index_page").run()
    no_exception(at)
    assert any("read-only" in i.value for i in at.info)
    assert not [b for b in at.button if "index" in b.label.lower() or b.label == "Remove"]
    assert at.metric  # status is still shown


def test_index_page_indexes_only_inside_allowed_roots_and_removes_folders(image_tree, tmp_path, use_db):
    import shutil

    from lookalike import Engine

    tree = shutil.copytree(image_tree, tmp_path / "tree")
    db = tmp_path / "idx"
    with Engine.open(db, model="pixels") as eng:
        eng.add([tree / "photos"], progress=False, workers=0, warn=None)
    use_db(db, LOOKALIKE_UI_ALLOW_WRITE="1")  # no --allow-root: only the folders already in the index
    at = page("index_page").run()
    (tree / "photos" / "sneaky").symlink_to("/etc")  # inside by name, outside once resolved
    for bad in ("/etc", str(tree / "photos" / ".." / ".."), str(tree / "photos" / "sneaky")):
        at.text_input(key="index_folder").input(bad)
        [b for b in at.button if b.label == "Build / update index"][0].click().run()
        assert at.error and "outside the folders this app may index" in at.error[0].value, bad
    at.text_input(key="index_folder").input(str(tree / "photos" / ".." / "photos"))
    [b for b in at.button if b.label == "Build / update index"][0].click().run()
    finish_job(at, db)
    no_exception(at)
    assert not at.error
    before = {m.label: m.value for m in at.metric}["Images"]
    assert int(before) > 0
    [b for b in at.button if b.label == "Remove"][0].click().run()
    no_exception(at)
    assert {m.label: m.value for m in at.metric}["Images"] == before  # nothing yet: it asks first
    assert any("Remove `" in w.value for w in at.warning)
    at.button(key="index_remove_no").click().run()
    assert not any("Remove `" in w.value for w in at.warning)
    [b for b in at.button if b.label == "Remove"][0].click().run()
    at.button(key="index_remove_yes").click().run()
    no_exception(at)
    assert {m.label: m.value for m in at.metric}["Images"] == "0"
    assert (tree / "photos").is_dir() and any((tree / "photos").iterdir())  # nothing deleted on disk
    at.button(key="index_remove_undo").click().run()  # undo: the folder is indexed again, as a job
    finish_job(at, db)
    assert {m.label: m.value for m in at.metric}["Images"] == before


# ---------------------------------------------------------------------------- Explore
def test_explore_page_maps_and_shows_a_group(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("explore_page").run()
    no_exception(at)
    assert at.get("vega_lite_chart"), "no chart"
    groups = at.selectbox(key="ex_group").options
    assert any(g.endswith("photos") for g in groups)
    photos = [g for g in groups if g.endswith("photos")][0]
    at.selectbox(key="ex_group").set_value(photos).run()
    n_photos = len([p for p in (image_tree / "photos").glob("*.png")])
    assert any(f"{photos}: {n_photos} images" in s.value for s in at.subheader)
    assert len(at.image) >= 1
    at.radio(key="ex_method").set_value("t-SNE").run()
    no_exception(at)
    assert any("t-SNE of" in c.value for c in at.caption)
    at.radio(key="ex_colour").set_value("cluster").run()
    no_exception(at)
    assert all(o.startswith("cluster ") for o in at.selectbox(key="ex_group").options)
    if have_samples():
        at.radio(key="ex_colour").set_value("label").run()
        assert "cifar10" not in at.selectbox(key="ex_group").options  # labels are class names
        assert len(at.selectbox(key="ex_group").options) >= 3


# ---------------------------------------------------------------------------- Compare
def test_compare_page_two_images_under_embedders(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("compare_page").run()
    no_exception(at)
    assert any("Choose two images" in i.value for i in at.info)
    for side, name in (("A", "chelsea.png"), ("B", "chelsea.png")):
        at.radio(key=f"cmp_src_{side}").set_value("Indexed image").run()
        at.selectbox(key=f"cmp_pick_{side}").set_value(str(image_tree / "photos" / name)).run()
    at.multiselect(key="cmp_models").set_value(["pixels", "efficientnet_lite0"]).run()
    [b for b in at.button if b.label == "Compare"][0].click().run()
    no_exception(at)
    df = at.dataframe[0].value
    sims = dict(zip(df["embedder"], df["similarity"]))
    assert sims["pixels"] == pytest.approx(1.0, abs=1e-3)
    assert sims["efficientnet_lite0"] == pytest.approx(1.0, abs=1e-3)
    # a different image B: lower similarity; upload path for B
    at.radio(key="cmp_src_B").set_value("Upload").run()
    at.file_uploader(key="cmp_up_B").set_value(("moon.png", png_bytes(load_photo("moon")), "image/png")).run()
    [b for b in at.button if b.label == "Compare"][0].click().run()
    no_exception(at)
    sims = dict(zip(at.dataframe[0].value["embedder"], at.dataframe[0].value["similarity"]))
    assert sims["efficientnet_lite0"] < 0.9 and sims["pixels"] < 0.9


def test_compare_reports_embedders_that_cannot_load():
    from lookalike.ui.compare_page import similarities

    a, b = load_photo("chelsea").convert("RGB"), load_photo("coffee").convert("RGB")
    rows = similarities(a, b, ["pixels", "checkpoint:/nonexistent/model.pt"])
    assert rows[0]["similarity"] is not None and -1.0 <= rows[0]["similarity"] <= 1.0
    assert rows[1]["similarity"] is None and rows[1]["note"]


# ---------------------------------------------------------------------------- app, safety, command
def test_app_opens_on_the_search_page(pixels_db, use_db):
    use_db(pixels_db)
    import lookalike.ui

    app = Path(lookalike.ui.__file__).parent / "app.py"
    at = AppTest.from_file(str(app), default_timeout=TIMEOUT).run()
    no_exception(at)
    assert at.title[0].value == "Search"
    assert any("images · model **pixels**" in c.value for c in at.sidebar.caption)


def test_app_without_index_points_to_the_index_page(tmp_path, use_db):
    use_db(tmp_path / "none")
    at = page("search_page").run()
    no_exception(at)
    assert any("Build one on the **Index** page" in i.value for i in at.info)


def test_safety_containment(tmp_path):
    from lookalike.ui.safety import (
        UnsafePathError,
        UploadTooLarge,
        check_readable,
        check_upload,
        is_inside,
    )

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    f = root / "sub" / "a.png"
    f.write_bytes(b"x")
    other = tmp_path / "rootkit"  # shares the prefix "root"
    other.mkdir()
    (other / "b.png").write_bytes(b"y")
    (root / "link.png").symlink_to(other / "b.png")
    assert is_inside(f, [root]) and check_readable(f, [str(root)]) == f.resolve()
    assert not is_inside(other / "b.png", [root])
    assert not is_inside(root / "sub" / ".." / ".." / "rootkit" / "b.png", [root])
    with pytest.raises(UnsafePathError):
        check_readable(root / "link.png", [root])  # symlink leading out of the root
    with pytest.raises(UnsafePathError):
        check_readable("/etc/passwd", [root])
    with pytest.raises(UnsafePathError):
        check_readable(root / "sub", [root])  # a folder, not a file
    with pytest.raises(UnsafePathError):
        check_readable(f, [])
    assert check_upload(b"abc", "x", limit=3) == b"abc"
    with pytest.raises(UploadTooLarge):
        check_upload(b"abcd", "x", limit=3)
    with pytest.raises(ValueError):
        check_upload(b"", "x", limit=3)
    # the page's note for a file over the cap: its real size in the reason, only for the web app's own uploads
    from lookalike.ui.safety import TOO_LARGE_MARKER

    note = TOO_LARGE_MARKER + b'{"name": "big.jpg", "size": 3145728}'
    with pytest.raises(UploadTooLarge, match=r"big.jpg: 3 MB is over the 2 MB upload limit"):
        check_upload(note, "big.jpg", limit=2 * 2**20, from_page=True)
    assert check_upload(note, "big.jpg", limit=2 * 2**20) == note  # the HTTP API: just bytes (not an image)


def test_freeze_long_lived_freezes_once_per_engine_and_imports():
    import gc

    from lookalike.ui import state

    gc.unfreeze()
    try:
        engine = object()
        assert state.freeze_long_lived(engine) is True
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules' objects
        junk = [[i] for i in range(100)]
        assert state.freeze_long_lived(engine) is False and gc.get_freeze_count() == frozen  # nothing new
        assert state.freeze_long_lived(object()) is True and gc.get_freeze_count() >= frozen + len(junk)  # new engine
    finally:
        gc.unfreeze()


def test_ui_command_binds_to_localhost_by_default():
    from lookalike.ui.commands import build_command

    from lookalike.cli import build_parser

    args = build_parser().parse_args(["ui", "--db", "some-index"])
    assert args.host == "127.0.0.1" and args.port == 8501
    cmd = build_command(args)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "80"  # 4x: the app states the 20 MB cap itself
    assert "--theme.base" not in cmd  # the theme follows the system
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--") + 1 :][:2] == ["--db", os.path.abspath("some-index")]
    assert "--allow-write" not in cmd  # read-only unless asked
    args = build_parser().parse_args(["ui", "--db", "x", "--port", "9000", "--host", "0.0.0.0", "--allow-write",
                                      "--allow-root", "."])
    cmd = build_command(args)
    assert cmd[cmd.index("--server.port") + 1] == "9000" and "--allow-write" in cmd
    assert cmd[cmd.index("--allow-root") + 1] == os.path.realpath(".")
