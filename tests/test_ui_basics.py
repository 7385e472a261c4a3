"""Search page basics through AppTest on a real small index: folder filter, result pages, the upload cap with
stale results cleared, noise-panel labels, and the original of a result (roots only, symlinks resolved)."""
from __future__ import annotations

import io

import pytest
from lookalike.data.photos import load_photo
from PIL import Image
from helpers import no_exception, page, png_bytes, ui_server

pytestmark = pytest.mark.slow  # runs the Streamlit search page


def result_names(at) -> list[str]:
    return [m.value.split("`")[1] for m in at.markdown if m.value.startswith("**#")]


def test_folder_filter_and_pages(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    at.selectbox(key="q_pick").set_value(str(image_tree / "photos" / "coffee.png")).run()
    at.slider(key="k").set_value(4).run()
    no_exception(at)
    first = result_names(at)
    assert len(first) == 4
    assert at.button(key="res_prev").disabled
    at.button(key="res_next").click().run()
    no_exception(at)
    second = result_names(at)
    assert len(second) == 4 and not set(first) & set(second)
    assert any("page 2, ranks 5–8" in c.value for c in at.caption)
    photos = f"{image_tree.name}/photos"  # folders are shown under their root's name
    n_photos = len(list((image_tree / "photos").glob("*.png")))
    assert f"{photos} ({n_photos})" in at.selectbox(key="q_folder").options
    at.selectbox(key="q_folder").set_value(photos).run()
    no_exception(at)
    names = result_names(at)  # page 2 of 4 per page within photos/
    assert names and all(n.endswith(".png") for n in names)
    got = {m.value.split("  \n")[2].split(" · ")[1] for m in at.markdown if m.value.startswith("**#")}
    assert got == {photos}
    at.button(key="res_prev").click().run()
    assert len(result_names(at)) == min(4, n_photos)


def test_oversized_upload_replaces_the_old_results_with_the_reason(pixels_db, image_tree, use_db):
    use_db(pixels_db, LOOKALIKE_MAX_UPLOAD_MB="0.05")
    at = page("search_page").run()
    at.file_uploader(key="q_upload").set_value(("ok.png", png_bytes(load_photo("coffee").resize((64, 48))),
                                                "image/png")).run()
    assert result_names(at)
    big = png_bytes(Image.effect_noise((400, 400), 80))
    at.file_uploader(key="q_upload").set_value(("big.png", big, "image/png")).run()
    no_exception(at)
    assert at.error and "over the 0.05 MB upload limit" in at.error[0].value
    assert not result_names(at) and not [c for c in at.caption if " results " in c.value]
    # removing the upload clears its query: back to the prompt, no stale grid
    at.file_uploader(key="q_upload").set_value(None).run()
    assert not result_names(at) and any("Upload an image" in i.value for i in at.info)


def test_noise_panel_labels_what_is_shown(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    at.selectbox(key="q_pick").set_value(str(image_tree / "photos" / "astronaut.png")).run()
    at.toggle(key="den_on").set_value(True).run()
    at.radio(key="den_method").set_value("classical").run()
    no_exception(at)
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert "Query as searched (no noise added)" in caps
    assert not any("σ added" in c or "before the added noise" in c for c in caps)
    at.slider(key="noise_sigma").set_value(0.2).run()
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert "Noisy query (σ added = 0.20)" in caps and "Query before the added noise" in caps


def test_original_is_served_only_from_the_roots(image_tree, tmp_path):
    from lookalike.ui.original import original_image
    from lookalike.ui.safety import UnsafePathError

    roots = [str(image_tree)]
    raw, shown, size = original_image(str(image_tree / "photos" / "chelsea.png"), roots)
    assert raw == shown == (image_tree / "photos" / "chelsea.png").read_bytes()
    assert size == load_photo("chelsea").size  # full resolution, not a thumbnail
    tif = image_tree / "photos" / "coffee-tiff.tif"
    load_photo("coffee").save(tif)
    try:
        raw, shown, size = original_image(str(tif), roots)
        assert Image.open(io.BytesIO(shown)).format == "PNG" and size == load_photo("coffee").size
    finally:
        tif.unlink()
    secret = tmp_path / "secret.png"
    load_photo("camera").save(secret)
    link = image_tree / "photos" / "link.png"
    link.symlink_to(secret)
    try:
        with pytest.raises(UnsafePathError):
            original_image(str(link), roots)  # inside by name, outside once the symlink is resolved
        with pytest.raises(UnsafePathError):
            original_image(str(secret), roots)
    finally:
        link.unlink()


def test_open_original_button_on_results(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    at.selectbox(key="q_pick").set_value(str(image_tree / "photos" / "rocket.png")).run()
    at.button(key="orig-1").click().run()
    no_exception(at)
    w, h = load_photo("rocket").size
    assert any(f"{w}×{h}" in c.value and "rocket.png" in c.value for c in at.caption)
    assert any(b.proto.label == "Download original" for b in at.get("download_button"))


def test_compare_warns_when_the_training_domain_does_not_fit():
    from lookalike.data.samples import DataError, load_sample
    from lookalike.ui.compare_page import domain_warning

    cat, moon = load_photo("chelsea"), load_photo("moon")
    assert "handwritten digits" in domain_warning("siamese-mnist", [cat, cat])
    assert "grayscale" in domain_warning("siamese-cifar10", [moon, cat])
    assert domain_warning("efficientnet_lite0", [moon, cat]) is None  # ImageNet: photos of every kind
    try:
        digits = load_sample("mnist", "test").images[:2]
        cifar = load_sample("cifar10", "test").images[:2]
    except DataError:
        return
    assert domain_warning("siamese-mnist", [Image.fromarray(d) for d in digits]) is None
    assert domain_warning("siamese-cifar10", [Image.fromarray(c) for c in cifar]) is None


# ---------------------------------------------------------------------------- issue 24: words, cut-off, noise
@pytest.fixture(scope="module")
def copies_db(image_tree, tmp_path_factory):
    """The photos and CIFAR samples plus a half-size copy of the cat, indexed with the calibrated default model."""
    from lookalike.retrieval.engine import Engine

    root = tmp_path_factory.mktemp("uicopies")
    cat = load_photo("chelsea").convert("RGB")
    (root / "copies").mkdir()
    cat.resize((cat.width // 2, cat.height // 2)).save(root / "copies" / "chelsea-small.jpg", quality=85)
    with Engine.open(root / "index", model="ntxent-copies") as eng:
        eng.add([image_tree, root / "copies"], progress=False, workers=0, warn=None)
    return root / "index"


def cards(at) -> dict[str, str]:
    """file name -> the card's first line (rank, words, score)."""
    return {m.value.split("`")[1]: m.value.split("  \n")[0].split(" · ", 1)[1]
            for m in at.markdown if m.value.startswith("**#")}


def test_scores_in_words_stay_when_the_query_is_hidden_and_the_tail_is_cut(copies_db, image_tree, use_db):
    use_db(copies_db)
    at = page("search_page").run()
    at.slider(key="k").set_value(24).run()
    at.selectbox(key="q_pick").set_value(str(image_tree / "photos" / "chelsea.png")).run()
    no_exception(at)
    shown = cards(at)
    assert shown["chelsea.png"].startswith("**copy**") and shown["chelsea-small.jpg"].startswith("**copy**")
    assert all(v.split(" · ")[0] in ("**copy**", "**very similar**", "**similar**") for v in shown.values())
    # hiding the query leaves every other result's words and score as they were
    at.checkbox(key="exclude_self").check().run()
    hidden_self = cards(at)
    assert "chelsea.png" not in hidden_self
    assert hidden_self == {n: v for n, v in shown.items() if n != "chelsea.png"}
    at.checkbox(key="exclude_self").uncheck().run()
    # a folder filter leaves the words and scores of the results it keeps as they were
    photos = f"{image_tree.name}/photos"
    at.selectbox(key="q_folder").set_value(photos).run()
    in_photos = cards(at)
    assert in_photos and "chelsea-small.jpg" not in in_photos
    assert all(shown[n].split(" · ", 1)[1] == v.split(" · ", 1)[1] for n, v in in_photos.items() if n in shown)
    at.selectbox(key="q_folder").set_value("All folders").run()
    # the cut-off hid the noise tail; unticking it shows more, and the cut results all scored lower
    at.checkbox(key="hide_noise").uncheck().run()
    everything = cards(at)
    assert set(shown) < set(everything)
    cut = min(float(v.split(" · ")[1]) for v in shown.values())
    assert all(float(everything[n].split(" · ")[1]) < cut for n in set(everything) - set(shown))
    assert any("weaker results hidden" in c.value for c in page_captions(at, ran=shown))


def page_captions(at, ran):
    """The captions of the run that showed ``ran`` (re-run it with the cut-off on)."""
    at.checkbox(key="hide_noise").check().run()
    assert cards(at) == ran
    return at.caption


def test_a_noisy_query_is_denoised_automatically_and_says_so(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    at.selectbox(key="q_pick").set_value(str(image_tree / "photos" / "astronaut.png")).run()
    no_exception(at)
    assert not any("looks noisy" in i.value for i in at.info)  # a clean photo is searched as it is
    at.slider(key="noise_sigma").set_value(0.5).run()
    no_exception(at)
    notice = [i.value for i in at.info if "looks noisy" in i.value]
    assert notice and "denoised before searching" in notice[0]
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert any(c.startswith("Searched: the query as it is") or c.startswith("Denoised:") for c in caps), caps
    at.checkbox(key="den_auto").uncheck().run()
    assert not any("looks noisy" in i.value for i in at.info)
    caps = [c for img in at.image for c in (getattr(img, "captions", None) or [])]
    assert "Denoising is off" in " ".join(i.value for i in at.info)


def test_a_wrong_file_is_explained_inline_and_cleared_by_a_good_one(pixels_db, image_tree, use_db):
    use_db(pixels_db)
    at = page("search_page").run()
    at.file_uploader(key="q_upload").set_value(("notes.txt", b"shopping list: milk, eggs", "text/plain")).run()
    no_exception(at)
    assert at.error and "notes.txt" in at.error[0].value and "Cannot read" in at.error[0].value
    good = (image_tree / "photos" / "coffee.png").read_bytes()
    at.file_uploader(key="q_upload").set_value(("coffee.png", good, "image/png")).run()
    no_exception(at)
    assert not at.error and result_names(at)[0] == "coffee.png"


def test_ui_server_fails_with_the_apps_own_message_when_it_does_not_start(tmp_path):
    """The tests' ui_server (over lookalike.ui.screenshots.ui_server) fails at once, with the end of the app's log,
    when the app exits before answering."""
    with pytest.raises(AssertionError, match=r"exited with code 2[\s\S]*unrecognized arguments: --no-such-flag"):
        with ui_server(tmp_path / "index", "--no-such-flag"):
            pass
