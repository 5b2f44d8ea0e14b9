"""End to end on generated pages of every tuned layout family: ground-truth text lines (jittered, joined
across near cells, look-alike characters, residual skew) → line layout → structuring, scored against the
generator's truth. The held-out families appear here only in one smoke test; bench/ocr.py scores them."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from edge.reports.catalogue import load_catalogue
from edge.reports.page import Box, TextLine
from edge.reports.reader import ReportReader, page_from_lines
from edge.reports.structure import structure
from tests.hw_sim.reports import (
    FAMILIES,
    HELD_OUT,
    PAGE_SIZE,
    TUNED,
    available_fonts,
    make_family,
    photograph,
    truth_lines,
)

pytestmark = pytest.mark.skipif(not available_fonts(), reason="no CJK fonts installed (fonts-noto-cjk, fonts-wqy-*)")
NUMBER = re.compile(r"[<>≤≥]?\d+(?:\.\d+)?")


def _score(family: str, seeds: range, noise: float) -> tuple[int, int, int, int, list[str]]:
    """(truth items, reported, found, exact value and flag) over the pages, and what went wrong."""
    cat = load_catalogue()
    truth_n = reported = found = exact = 0
    wrong: list[str] = []
    for seed in seeds:
        page = make_family(seed, family)
        lines = truth_lines(page, skew_deg=(seed % 3 - 1) * 0.8, seed=seed, noise=noise)
        report = structure(page_from_lines(lines, *PAGE_SIZE, catalogue=cat))
        truth = {}
        for t in page.items:
            code = (cat.match(t.name) or cat.match(t.abbr)).item.code  # type: ignore[union-attr]
            truth[(code, "".join(t.value.split()) if code == "11535-2" else "")] = t
        truth_n += len(truth)
        for item in report.items:
            key = (item.code, "".join(str(item.value).split()) if item.code == "11535-2" else "")
            reported += 1
            want = truth.get(key)
            if want is None:
                wrong.append(f"{seed}: {item.name} is not on the page")
                continue
            found += 1
            if want.type == "text":
                ok = "".join(item.printed.split()) == "".join(want.value.split())
            else:
                m = NUMBER.search(item.printed)
                ok = bool(m) and m.group(0) == want.value and (not want.ref or (item.flag or "N") == (want.flag or "N"))
            exact += ok
            if not ok:
                wrong.append(f"{seed}: {item.name} read {item.printed!r} flag {item.flag}, printed {want.value!r} "
                             f"flag {want.flag!r}")
        got = {(i.code, "".join(str(i.value).split()) if i.code == "11535-2" else "") for i in report.items}
        wrong += [f"{seed}: {t.name} missed" for k, t in truth.items() if k not in got]
    return truth_n, reported, found, exact, wrong


def test_the_corpus_has_fifteen_families_five_held_out() -> None:
    assert len(FAMILIES) >= 15 and len(HELD_OUT) >= 5 and set(HELD_OUT) < set(FAMILIES)
    assert set(TUNED) == set(FAMILIES) - set(HELD_OUT)


@pytest.mark.parametrize("family", TUNED)
def test_truth_lines_hold_every_printed_value(family: str) -> None:
    page = make_family(11, family)
    lines = sorted(truth_lines(page), key=lambda ln: (ln.box.y, ln.box.x))
    text = " ".join(ln.text for ln in lines) + "".join(ln.text for ln in lines)  # a number may wrap
    assert page.items and all(t.value in text for t in page.items if t.type == "quantity")


@pytest.mark.parametrize("family", TUNED)
def test_tuned_family_end_to_end(family: str) -> None:
    truth_n, reported, found, exact, wrong = _score(family, range(300, 304), noise=1.0)
    precision, recall = found / max(1, reported), found / truth_n
    assert precision == 1.0, wrong  # never an item that is not on the page
    assert recall >= 0.97 and exact >= 0.98 * found, wrong


def test_held_out_families_smoke() -> None:
    """One page each: the structuring runs and makes nothing up (accuracy is bench/ocr.py's business)."""
    for family in HELD_OUT:
        truth_n, reported, found, _, _ = _score(family, range(900, 901), noise=0.5)
        assert reported > 0 and found == reported and truth_n > 0, family


class _FakeLines:
    """A line recogniser that gives the generator's truth lines, scaled to the corrected page."""

    def __init__(self, page) -> None:  # noqa: ANN001 - a ReportPage
        self.page = page

    def read_lines(self, image: np.ndarray) -> list[TextLine]:
        sx, sy = image.shape[1] / PAGE_SIZE[0], image.shape[0] / PAGE_SIZE[1]
        out = []
        for ln in truth_lines(self.page):
            b = ln.box
            out.append(TextLine(ln.text, ln.conf, Box(int(b.x * sx), int(b.y * sy), int(b.w * sx), int(b.h * sy)),
                                char_x=tuple(x * sx for x in ln.char_x)))
        return out


def test_the_reader_lays_out_recognised_lines(monkeypatch) -> None:
    page = photograph(make_family(5, "bilingual"), "scan")
    reader = ReportReader(engine="tesseract")
    reader.lines = _FakeLines(page)  # the recogniser's place (PP-OCR on the box)
    read = reader.read(page.frame)
    assert read.text.source == "lines" and read.timings.engine == "ppocr"
    report = structure(read.text)
    cat = load_catalogue()
    want = {cat.match(t.name).item.code: t.value for t in page.items}  # type: ignore[union-attr]
    got = {i.code: i.printed for i in report.items}
    assert got == want
    reader.close()


def test_without_pp_ocr_the_reader_falls_back_to_tesseract(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "edge.reports.textlines", None)  # not installed
    with ReportReader() as reader:
        assert reader.engine == "tesseract" and reader.lines is None
    with pytest.raises(ImportError):
        ReportReader(engine="ppocr")
    with pytest.raises(ValueError):
        ReportReader(engine="paddle")
