"""Layout (words → lines and tables), the settling of numeric cells and arrow shapes; no OCR involved."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edge.reports.layout import build_page, group_lines, join_words, split_spanning
from edge.reports.ocr import arrow_direction, fix_arrows
from edge.reports.page import Box, Word
from edge.reports.reader import clean_number, is_numeric_cell, settle
from tests.hw_sim.reports import _font, available_fonts

H = 24  # text height of the hand-made pages


def w(text: str, x: int, y: int, width: int | None = None, h: int = H, conf: float = 90.0) -> Word:
    """A word at (x, y); its width is about a text height per Chinese character, half for others."""
    if width is None:
        width = sum(H if "\u3400" <= c <= "\u9fff" else H // 2 for c in text)
    return Word(text, conf, Box(x, y, width, h))


def table_words(x0: int, y0: int, rows: list[tuple[str, ...]], xs: tuple[int, ...], pitch: int = 40) -> list[Word]:
    out = []
    for r, cells in enumerate(rows):
        for text, x in zip(cells, xs):
            if text:
                out.extend(w(part, x0 + x + 14 * i, y0 + r * pitch) if i == 0 else
                           w(part, x0 + x + sum(len(p) for p in text.split()[:i]) * 12 + 14 * i, y0 + r * pitch)
                           for i, part in enumerate(text.split()))
    return out


HEADER = ("检验项目", "结果", "提示", "单位", "参考区间")
ROWS = [("白细胞计数", "11.57", "↑", "×10^9/L", "3.50-9.50"),
        ("血红蛋白", "128", "", "g/L", "115-150"),
        ("血小板计数", "87", "↓", "×10^9/L", "125-350"),
        ("红细胞压积", "38.2", "", "%", "35.0-45.0")]
XS = (0, 200, 300, 370, 520)


def test_join_words_spaces_latin_but_not_chinese() -> None:
    assert join_words([w("白细胞", 0, 0), w("计数", 75, 0)], H) == "白细胞计数"
    assert join_words([w("8.12", 0, 0), w("H", 52, 0)], H) == "8.12 H"
    assert join_words([w("双顶径(BPD):", 0, 0, 120), w("87", 128, 0), w("mm", 160, 0)], H) == "双顶径(BPD): 87 mm"


def test_lines_group_words_despite_slight_skew() -> None:
    words = [w("姓名:", 0, 100), w("王某丽", 70, 102), w("性别:", 400, 104), w("女", 470, 105),
             w("科室:", 0, 140), w("产科", 70, 141)]
    lines = group_lines(words)
    assert [[x.text for x in ln] for ln in lines] == [["姓名:", "王某丽", "性别:", "女"], ["科室:", "产科"]]


def test_table_rows_and_columns_from_gutters() -> None:
    words = [w("肝功能检验报告单", 300, 20)] + table_words(60, 100, [HEADER, *ROWS], XS)
    words.append(w("检验者:", 60, 400))
    page = build_page(words, 1240, 1754)
    assert len(page.tables) == 1
    table = page.tables[0]
    assert [c.text for c in table.header.cells] == list(HEADER)
    assert [c.col for c in table.header.cells] == [0, 1, 2, 3, 4]
    got = [tuple(c.text for c in r.cells) for r in table.rows]
    assert got[0] == ROWS[0]
    assert got[1] == ("血红蛋白", "128", "g/L", "115-150")  # the empty flag cell is absent...
    assert [c.col for c in table.rows[1].cells] == [0, 1, 3, 4]  # ...and the columns keep their index
    assert [ln.text for ln in page.lines] == ["肝功能检验报告单", "检验者:"]


def test_table_ends_at_a_large_gap() -> None:
    words = table_words(60, 100, [HEADER, *ROWS], XS) + [w("备注", 60, 600), w("无", 300, 600)]
    page = build_page(words, 1240, 1754)
    assert len(page.tables[0].rows) == len(ROWS)
    assert [ln.text for ln in page.lines] == ["备注", "无"]


def test_two_column_page_gives_two_tables() -> None:
    left = table_words(40, 100, [HEADER, *ROWS[:2]], (0, 170, 250, 320, 440))
    right = table_words(640, 100, [HEADER, *ROWS[2:]], (0, 170, 250, 320, 440))
    page = build_page(left + right, 1240, 1754)
    assert len(page.tables) == 2
    assert [r.cells[0].text for r in page.tables[0].rows] == ["白细胞计数", "血红蛋白"]
    assert [r.cells[0].text for r in page.tables[1].rows] == ["血小板计数", "红细胞压积"]
    assert [c.col for c in page.tables[1].header.cells] == [0, 1, 2, 3, 4]
    assert page.tables[1].rows[0].cells[2].text == "↓"


def test_two_column_page_split_when_the_first_name_title_is_misread() -> None:
    garbled = ("Kem", *HEADER[1:])
    left = table_words(40, 100, [garbled, *ROWS[:2]], (0, 170, 250, 320, 440))
    right = table_words(640, 100, [HEADER, *ROWS[2:]], (0, 170, 250, 320, 440))
    page = build_page(left + right, 1240, 1754)
    assert len(page.tables) == 2
    assert [r.cells[0].text for r in page.tables[1].rows] == ["血小板计数", "红细胞压积"]
    # a name title in a later column of a single table (no result title after it) does not split it
    single = table_words(40, 100, [("项目名称", "英文名称", "结果", "单位"), ("白细胞计数", "WBC", "6.1", "g/L"),
                                   ("血红蛋白", "HGB", "128", "g/L")], (0, 200, 320, 420))
    assert len(build_page(single, 1240, 1754).tables) == 1


def test_word_read_across_a_gutter_is_cut() -> None:
    columns = [(0, 100), (200, 260)]
    joined = Word("检验项目结果", 80, Box(0, 0, 260, H))
    parts = split_spanning([joined], columns, H)
    assert [p.text for p in parts] == ["检验项目", "结果"]
    assert parts[1].box.x >= 150


def test_key_value_lines_are_cut_at_wide_gaps_and_narrative_stays_whole() -> None:
    words = [w("双顶径(BPD):", 110, 300, 150), w("87", 268, 300), w("mm", 300, 300),
             w("头围(HC):", 650, 300, 110), w("260", 768, 300), w("mm", 810, 300),
             w("宫内可见一胎儿,", 110, 400), w("胎位头位。", 310, 400)]
    page = build_page(words, 1240, 1754)
    assert not page.tables
    assert [ln.text for ln in page.lines] == ["双顶径(BPD): 87 mm", "头围(HC): 260 mm", "宫内可见一胎儿, 胎位头位。"]


def test_empty_page() -> None:
    page = build_page([], 1000, 1400, notes=("dim light",))
    assert page.lines == () and page.tables == () and page.notes == ("dim light",)


@pytest.mark.parametrize("first, second, expected", [
    ("468", "46.8", "46.8"),          # a lost decimal point comes back
    ("44", "11", "44"),               # different digits: the first reading stands
    ("8.12H", "8.12", "8.12 H"),      # the printed flag is kept
    ("74,3", "74.3", "74.3"),         # decimal comma
    ("350-950", "3.50-9.50", "3.50-9.50"),
    ("3.010.0", "3.0-10.0", "3.0-10.0"),  # only the second has the shape of a range
    ("2.38", "2.3.8", "2.38"),        # more points but no number shape
    ("5.21 ↑", "5.21", "5.21 ↑"),
])
def test_settle(first: str, second: str, expected: str) -> None:
    assert settle(first, second) == expected


def test_numeric_cells_and_clean_number() -> None:
    assert is_numeric_cell("11.57 ↑") and is_numeric_cell("3.50--9.50") and is_numeric_cell("<5.1")
    assert not is_numeric_cell("×10^9/L") and not is_numeric_cell("血红蛋白") and not is_numeric_cell("mmol/L")
    assert clean_number("1,234") == "1,234" and clean_number(" 7 4,3 ") == "74.3"


def _glyph(char: str, font: str, size: int) -> np.ndarray:
    img = Image.new("L", (4 * size, 4 * size), 255)
    ImageDraw.Draw(img).text((size, size // 2), char, font=_font(font, size), fill=0)
    a = np.asarray(img)
    ys, xs = np.nonzero(a < 128)
    return a[ys.min() - 2:ys.max() + 3, xs.min() - 2:xs.max() + 3]


@pytest.mark.parametrize("font", available_fonts())
def test_arrow_shapes(font: str) -> None:
    assert arrow_direction(_glyph("↑", font, 26)) == "↑"
    assert arrow_direction(_glyph("↓", font, 26)) == "↓"
    for char in "1T7个小lJ十4":
        assert arrow_direction(_glyph(char, font, 26)) is None, char


@pytest.mark.parametrize("font", available_fonts())
def test_blurred_arrow_shapes(font: str) -> None:
    """Blur fills an arrow's head and pales its stem: still an arrow where a flag is expected, and the
    characters that stand there otherwise are not."""
    import cv2

    def soft(char: str) -> np.ndarray:
        g = np.pad(_glyph(char, font, 22), 4, constant_values=255)
        return cv2.GaussianBlur(g, (0, 0), 0.8)

    if font != "noto_serif":  # its thin arrow blurs into a shape too weak to tell (left unread, not misread)
        assert arrow_direction(soft("↑"), blurred=True) == "↑"
        assert arrow_direction(soft("↓"), blurred=True) == "↓"
    for char in "1T7lJHL":
        assert arrow_direction(soft(char), blurred=True) is None, char


@pytest.mark.skipif(not available_fonts(), reason="no CJK fonts installed")
def test_fix_arrows_by_shape() -> None:
    font = available_fonts()[0]
    page = np.full((80, 400), 255, np.uint8)
    up, down = _glyph("↑", font, 26), _glyph("↓", font, 26)
    page[20:20 + up.shape[0], 100:100 + up.shape[1]] = up
    page[20:20 + down.shape[0], 300:300 + down.shape[1]] = down
    lone = Word("个", 40.0, Box(100, 20, up.shape[1], up.shape[0]))
    after_number = Word("l", 40.0, Box(300, 20, down.shape[1], down.shape[0]))
    number = Word("87", 90.0, Box(250, 22, 30, 22))
    words = fix_arrows([(lone, []), (number, []), (after_number, [])], page)
    assert [x.text for x in words] == ["↑", "87", "↓"]
    # a one-letter word inside text is left alone
    word = Word("个", 90.0, Box(100, 20, up.shape[1], up.shape[0]))
    neighbour = Word("一", 90.0, Box(100 + up.shape[1] + 2, 20, 20, 20))
    assert [x.text for x in fix_arrows([(word, []), (neighbour, [])], page)] == ["个", "一"]


def test_lost_point_and_latin_names() -> None:
    from edge.reports.page import Cell, Row
    from edge.reports.reader import _latin_share, _point_missing

    def row(*texts: str) -> Row:
        cells = tuple(Cell(t, 90.0, Box(100 * i, 0, 60, 20), i) for i, t in enumerate(texts))
        return Row(cells, Box(0, 0, 400, 20))

    assert _point_missing("429", row("中性粒细胞绝对值", "429", "10^9/L", "1.80-6.30"))
    assert _point_missing("365 ↑", row("MCHC", "365 ↑", "g/L", "316.0-354.0"))
    assert not _point_missing("365", row("MCHC", "365", "g/L", "316-354"))   # a whole-number range
    assert not _point_missing("4.29", row("中性粒细胞绝对值", "4.29", "10^9/L", "1.80-6.30"))
    assert not _point_missing("42", row("x", "42", "%", "1.5-8.0"))           # two digits: too short to tell
    assert _latin_share("Wp PRE RF SP") == 1.0
    assert _latin_share("嗜酸性粒细胞百分比") == 0.0
    assert _latin_share("") == 0.0
