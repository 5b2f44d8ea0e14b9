"""PP-OCR text lines on ONNX Runtime: the models load and are hash-checked, a rendered page is read."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from edge.reports import textlines
from edge.reports.capture import correct_page
from edge.reports.textlines import PpOcrLines, boxes_from_map, ctc_decode, det_size
from models_tflite import loader
from tests.hw_sim import reports as sim

pytestmark = sim.reading_skip()


def _squash(text: str) -> str:
    return "".join(text.split()).replace("：", ":").replace("（", "(").replace("）", ")")


@pytest.fixture(scope="module")
def reader() -> PpOcrLines:
    return PpOcrLines(threads=1)


@pytest.mark.parametrize("name", [textlines.DET_MODEL, textlines.REC_MODEL, textlines.CLS_MODEL])
def test_models_are_in_the_manifest_and_hash_checked(name: str) -> None:
    spec = loader.spec(name)
    assert spec.license == "Apache-2.0" and spec.bundled
    assert loader.verified_path(name) == loader.PACKAGE_DIR / spec.file
    assert name in loader.inventory()


def test_a_changed_model_file_is_refused(tmp_path, monkeypatch) -> None:
    for name in (textlines.DET_MODEL, textlines.REC_MODEL, textlines.CLS_MODEL):
        shutil.copy(loader.PACKAGE_DIR / loader.spec(name).file, tmp_path)
    bad = tmp_path / loader.spec(textlines.CLS_MODEL).file
    with bad.open("r+b") as f:
        f.seek(2000)
        byte = f.read(1)
        f.seek(2000)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(loader, "PACKAGE_DIR", tmp_path)
    with pytest.raises(loader.ModelHashMismatch):
        PpOcrLines(classify=True)


def test_the_dictionary_matches_the_recogniser(reader: PpOcrLines) -> None:
    assert len(reader.chars) == 6625
    assert reader.chars[0] == "<blank>" and reader.chars[-1] == " "
    for ch in "血红蛋白0123456789.~-%/L":
        assert ch in reader.chars


def test_ctc_decoding_collapses_repeats_and_drops_blanks() -> None:
    chars = ["<blank>", "a", "b", " "]
    steps = [1, 1, 0, 1, 2, 2, 0, 0]
    probs = np.full((len(steps), 4), 0.01, np.float32)
    for t, c in enumerate(steps):
        probs[t, c] = 0.9
    text, conf, where = ctc_decode(probs, chars)
    assert text == "aab"
    assert where == [0, 3, 4]
    assert conf == pytest.approx(0.9)
    assert ctc_decode(np.eye(4, dtype=np.float32)[[0, 0]], chars) == ("", 0.0, [])


def test_detection_post_processing_finds_each_line_on_the_page() -> None:
    prob = np.zeros((200, 320), np.float32)
    prob[40:52, 20:200] = 0.9     # a line
    prob[100:110, 60:300] = 0.8   # another
    prob[160:162, 10:12] = 0.9    # a speck
    quads = boxes_from_map(prob, 2.0, 2.0, 640, 400)
    boxes = sorted((q.min(axis=0).tolist(), q.max(axis=0).tolist()) for q in quads)
    assert len(boxes) == 2
    (x0, y0), (x1, y1) = boxes[0]
    assert x0 < 40 and x1 > 398 and y0 < 80 and y1 > 102  # grown around the shrunk region, page pixels
    assert all(0 <= v <= 639 for b in boxes for v in (b[0][0], b[1][0]))


def test_a_name_trailing_a_faint_leader_is_kept() -> None:
    """A name (thick, sure) joined to the faint dots of its leader: the region's rectangle is mostly empty
    (mean below BOX_THRESH) but its own outline is text."""
    prob = np.zeros((120, 400), np.float32)
    prob[40:56, 20:80] = 0.95     # the name
    prob[50:54, 80:380] = 0.6     # its leader, thin and fainter, touching it
    rect_only = boxes_from_map(prob, 1.0, 1.0, 400, 120, shape_thresh=1.1)
    kept = boxes_from_map(prob, 1.0, 1.0, 400, 120)
    assert rect_only == [] and len(kept) == 1
    assert kept[0][:, 0].min() < 20 and 80 < kept[0][:, 0].max() < 120  # the name, not its leader


class _EchoDetector:
    """A detector session that gives back its input's first channel as the map, and records each run."""

    def __init__(self) -> None:
        self.heights: list[int] = []

    def get_inputs(self):  # noqa: ANN201 - mimics onnxruntime
        return [type("In", (), {"name": "x"})()]

    def run(self, _outputs, feeds):  # noqa: ANN001, ANN201
        x = feeds["x"]
        self.heights.append(x.shape[2])
        return [x[:, :1]]


@pytest.mark.parametrize(("height", "band", "runs"), [(960, 512, 2), (672, 512, 2), (1280, 512, 3), (480, 512, 1),
                                                       (960, 0, 1)])
def test_the_detector_runs_in_overlapping_bands_and_the_map_is_whole(height: int, band: int, runs: int) -> None:
    img = (np.arange(height, dtype=np.float32)[:, None, None] % 251 + np.zeros((1, 64, 3))).astype(np.uint8)
    reader = PpOcrLines.__new__(PpOcrLines)
    reader.det, reader.det_band = _EchoDetector(), band
    prob = reader.probability_map(img)
    assert prob.shape == (height, 64)
    assert np.array_equal(prob, textlines._normalise(img)[0])  # every row, from one band or another
    assert len(reader.det.heights) == runs and max(reader.det.heights) <= max(band, 32) or band == 0


def test_detector_input_is_bounded_and_a_multiple_of_32() -> None:
    assert det_size(2263, 1600, 960) == (960, 672)
    h, w = det_size(300, 500, 960)
    assert (h, w) == (288, 512)


def _read(reader: PpOcrLines, page: sim.ReportPage) -> tuple[np.ndarray, list]:
    image = correct_page(sim.photograph(page, "photo").frame).image
    return image, reader.read_lines(image)


def test_a_photographed_lab_report_reads_names_and_numbers(reader: PpOcrLines) -> None:
    page = sim.make_report(seed=31, layout="ruled")
    image, lines = _read(reader, page)
    texts = [_squash(line.text) for line in lines]
    h, w = image.shape[:2]
    assert len(lines) > 3 * len(page.items)
    for line in lines:
        assert 0.0 <= line.conf <= 1.0
        b = line.box
        assert b.x >= 0 and b.y >= 0 and b.w > 0 and b.h > 0 and b.x + b.w <= w and b.y + b.h <= h
        assert len(line.char_x) == len(line.text)
        assert all(b.x - 1 <= x <= b.x + b.w + 1 for x in line.char_x)
    names = sum(any(_squash(it.name) in t for t in texts) for it in page.items)
    values = sum(any(t == it.value for t in texts) for it in page.items)
    abbrs = sum(any(it.abbr in t for t in texts) for it in page.items)
    refs = sum(any(sim._range(_squash(it.ref)) == sim._range(t) for t in texts) for it in page.items)
    n = len(page.items)
    assert names >= n - 1 and values >= n - 1 and abbrs >= n - 1 and refs >= n - 1, texts


def test_an_ultrasound_report_reads_its_measurements_and_findings(reader: PpOcrLines) -> None:
    page = sim.make_report(seed=7, layout="ultrasound")
    _, lines = _read(reader, page)
    text = "".join(_squash(line.text) for line in lines).replace(",", "，")
    measured = [it for it in page.items if it.type == "quantity"]  # the findings are text items
    found = sum(f"{it.abbr}):{it.value}" in text.replace("（", "(").replace("）", ")") for it in measured)
    assert found >= len(measured) - 1, text
    assert _squash(page.narrative[-1]).replace(",", "，")[:-1] in text


def test_an_upside_down_page_is_read_turned(reader: PpOcrLines) -> None:
    page = sim.make_report(seed=31, layout="ruled")
    image = correct_page(sim.photograph(page, "scan").frame).image
    upright = {_squash(line.text) for line in reader.read_lines(image)}
    assert reader.last_rotation == 0
    turned = reader.read_lines(cv2.rotate(image, cv2.ROTATE_180))
    assert reader.last_rotation == 180
    texts = {_squash(line.text) for line in turned}
    assert len(texts & upright) >= 0.8 * len(upright)
    assert any(it.value in texts for it in page.items)


def test_an_empty_page_gives_no_lines(reader: PpOcrLines) -> None:
    assert reader.read_lines(np.full((800, 600), 255, np.uint8)) == []
    assert reader.times.lines == 0


def test_banded_detection_finds_the_lines_of_whole_page_detection(reader: PpOcrLines) -> None:
    page = sim.make_family(41, "ruled")
    image = textlines._bgr(correct_page(sim.photograph(page, "scan").frame).image)
    h, w = image.shape[:2]
    dh, dw = det_size(h, w)
    small = cv2.resize(image, (dw, dh), interpolation=cv2.INTER_AREA)
    whole = PpOcrLines.probability_map(type("R", (), {"det": reader.det, "det_band": 0})(), small)
    banded = PpOcrLines.probability_map(type("R", (), {"det": reader.det, "det_band": 512})(), small)
    assert dh > 512 and float(np.abs(whole - banded).mean()) < 0.01
    assert abs(len(boxes_from_map(whole, 1, 1, dw, dh)) - len(boxes_from_map(banded, 1, 1, dw, dh))) <= 1


def test_readers_share_one_memory_arena_and_read_alike(reader: PpOcrLines) -> None:
    """Every session of the process draws on one registered arena; a second reader on it reads the same."""
    assert textlines._shared_arena
    page = sim.make_report(seed=33, layout="ruled")
    _, first = _read(reader, page)
    _, second = _read(PpOcrLines(threads=1), page)
    assert [(line.text, line.box) for line in first] == [(line.text, line.box) for line in second]
    assert len(first) > 3 * len(page.items)
