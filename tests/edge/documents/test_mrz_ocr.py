"""The camera MRZ reader on synthetic passports and ID cards (tests/hw_sim/documents.py).

Needs the MRZ model from the shared folder (``$EHC_SHARED_DIR/models/tessdata/mrz.traineddata``); the
tests of the ``eng`` fallback and of the image helpers run without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from edge.documents.mrz import MrzFormat, parse_mrz
from edge.documents.mrz_ocr import MrzReader, MrzSettings, is_chevron, skew_angle, tessdata_folder
from edge.imageprep import FrameFormatError
from foundation.configbase import ConfigError, validate
from tests.conftest import shared_dir
from tests.hw_sim.documents import OCR_B, frames_without_mrz, sample_documents

TESSDATA = shared_dir() / "models" / "tessdata"
needs_model = pytest.mark.skipif(not (TESSDATA / "mrz.traineddata").is_file(),
                                 reason=f"shared models folder {TESSDATA} is missing (set EHC_SHARED_DIR)")
ALL_FORMATS = (MrzFormat.TD1, MrzFormat.TD3, MrzFormat.TD2)


@pytest.fixture(scope="module")
def mrz_reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MrzReader]:
    if not (TESSDATA / "mrz.traineddata").is_file():
        pytest.skip(f"shared models folder {TESSDATA} is missing (set EHC_SHARED_DIR)")
    settings = MrzSettings(tessdata=str(TESSDATA), cache_dir=str(tmp_path_factory.mktemp("cache")))
    with MrzReader(settings) as reader:
        yield reader


@pytest.fixture(scope="module")
def eng_reader() -> Iterator[MrzReader]:
    with MrzReader(MrzSettings()) as reader:
        yield reader


# -- reading ----------------------------------------------------------------------------------------------

@needs_model
def test_reads_filmed_documents_with_the_mrz_model(mrz_reader: MrzReader) -> None:
    """TD1, TD3 and TD2 documents tilted up to 5 degrees, skewed, blurred, noisy, unevenly lit, JPEG."""
    docs = list(sample_documents(21, seed=11, formats=ALL_FORMATS))
    results = [mrz_reader.read(d.frame) for d in docs]
    valid = [r is not None and r.valid for r in results]
    assert sum(valid) >= 0.99 * len(docs), [d.format.value for d, ok in zip(docs, valid) if not ok]
    for doc, result in zip(docs, results):
        if result is not None and result.valid:
            assert result.lines == doc.lines and result.format is doc.format
    assert mrz_reader.model == "mrz"
    t = mrz_reader.last_timings
    assert t.candidates >= 1 and 0 < t.locate_ms <= t.total_ms and t.ocr_ms > 0


@needs_model
def test_frames_without_a_zone_give_none(mrz_reader: MrzReader) -> None:
    """The empty desk and the fronts of cards and passports (photo and printed fields, no MRZ)."""
    for frame in frames_without_mrz(6, seed=2):
        assert mrz_reader.read(frame) is None
    assert mrz_reader.read(np.full((480, 640, 3), 200, np.uint8)) is None
    assert mrz_reader.read(np.zeros((20, 20), np.uint8)) is None


@needs_model
def test_grey_and_small_frames(mrz_reader: MrzReader) -> None:
    doc = next(sample_documents(1, seed=5, formats=(MrzFormat.TD3,), level="easy", width=800, height=600))
    grey = np.asarray(Image.fromarray(doc.frame[:, :, ::-1]).convert("L"))
    result = mrz_reader.read(grey)
    assert result is not None and result.valid and result.lines == doc.lines


@needs_model
def test_no_personal_data_in_the_log(mrz_reader: MrzReader, caplog: pytest.LogCaptureFixture) -> None:
    doc = next(sample_documents(1, seed=4, formats=(MrzFormat.TD1,)))
    with caplog.at_level(logging.DEBUG, logger="edge.documents"):
        result = mrz_reader.read(doc.frame)
    assert result is not None and result.valid
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "TD1" in logged
    for secret in (result.surname, result.document_number, doc.lines[1][:6], *doc.lines):
        assert secret not in logged


def test_eng_fallback_reads_easy_documents(eng_reader: MrzReader) -> None:
    """Without the MRZ model the system eng reads documents laid flat; its valid reads have the right number
    and dates (it may still take a filler for a letter where no check digit looks, e.g. in names)."""
    assert eng_reader.model == "eng"
    docs = list(sample_documents(6, seed=3, formats=ALL_FORMATS, level="easy"))
    results = [eng_reader.read(d.frame) for d in docs]
    valid = [(r, d) for r, d in zip(results, docs) if r is not None and r.valid]
    assert len(valid) >= 3
    for r, d in valid:
        truth = parse_mrz(d.lines)
        assert (r.document_number, r.birth_date, r.expiry_date) == (truth.document_number, truth.birth_date,
                                                                    truth.expiry_date)


# -- models -----------------------------------------------------------------------------------------------

@needs_model
def test_model_folder_without_eng_gets_a_combined_folder(tmp_path: Path) -> None:
    folder, lang = tessdata_folder(MrzSettings(tessdata=str(TESSDATA), cache_dir=str(tmp_path)))
    assert lang == "mrz" and folder == tmp_path / "tessdata"
    assert {p.name for p in folder.iterdir()} == {"mrz.traineddata", "eng.traineddata"}
    assert (folder / "mrz.traineddata").resolve() == (TESSDATA / "mrz.traineddata").resolve()
    assert tessdata_folder(MrzSettings(tessdata=str(TESSDATA), cache_dir=str(tmp_path)))[0] == folder  # again


def test_missing_model_falls_back_to_eng_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.documents"), MrzReader(MrzSettings(tessdata=str(tmp_path))) as reader:
        assert reader.model == "eng"
    text = caplog.text
    assert "no mrz.traineddata in" in text and "'eng'" in text and "without the MRZ model" in text


def test_unloadable_model_falls_back_to_eng(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "mrz.traineddata").write_bytes(b"not a model" * 100)
    settings = MrzSettings(tessdata=str(models), cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="edge.documents"), MrzReader(settings) as reader:
        assert reader.model == "eng"
    assert "cannot load the MRZ model" in caplog.text


def test_settings_are_strict() -> None:
    assert MrzSettings().tessdata is None
    with pytest.raises(ConfigError, match="tesdata: unknown key"):
        validate({"tesdata": "/x"}, MrzSettings, "edge.toml [mrz]")
    with pytest.raises(ConfigError, match="work_width"):
        validate({"work_width": 100}, MrzSettings, "edge.toml [mrz]")


def test_bad_frames_are_refused(eng_reader: MrzReader) -> None:
    with pytest.raises(FrameFormatError):
        eng_reader.read(np.zeros((480, 640), np.float32))


# -- image helpers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("angle", [-6.0, -2.5, 0.0, 1.5, 4.0])
def test_skew_angle_of_text_lines(angle: float) -> None:
    img = Image.new("L", (640, 480), 0)
    draw = ImageDraw.Draw(img)
    for y in range(150, 330, 40):
        for x in range(80, 560, 14):
            draw.rectangle((x, y, x + 8, y + 16), fill=255)
    mask = np.asarray(img.rotate(-angle, Image.Resampling.NEAREST)) > 0
    assert skew_angle(mask, -8, 8, 0.1) == pytest.approx(angle, abs=0.25)


def test_only_the_chevron_looks_like_a_chevron() -> None:
    font = ImageFont.truetype(str(OCR_B), 56)
    for blur in (0, 2):
        for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<":
            img = Image.new("L", (80, 80), 255)
            ImageDraw.Draw(img).text((10, 5), char, font=font, fill=0)
            if blur:
                img = img.filter(ImageFilter.GaussianBlur(blur))
            assert is_chevron(np.asarray(img) < 128) == (char == "<"), char
