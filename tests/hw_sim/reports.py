"""Synthetic Chinese medical reports with ground truth, photographed like a phone or the box's camera would.

There is no public set of Chinese lab reports, so pages are made up: hospital header, patient block,
a result table or an ultrasound narrative, and a footer, drawn with Debian's CJK fonts (Noto Sans / Serif
CJK, WenQuanYi Micro Hei / Zen Hei) in one of several hospital layouts (:data:`LAYOUTS`):

* ``ruled``: a grid table (every cell framed), abbreviation in its own column, flag ``↑`` / ``↓``;
* ``plain``: no rules but a line under the header, ``名称(缩写)`` in one column, flag ``H`` / ``L``;
* ``two_column``: a short table printed twice side by side (a common CBC layout);
* ``ultrasound``: an obstetric ultrasound report: measurement lines ``双顶径(BPD): 92 mm`` two to a line,
  then narrative findings and the conclusion.

Values are drawn around each item's reference range, some of them abnormal; the flag follows the range.
:func:`photograph` then degrades the page like a photo (:data:`DEGRADATIONS`): the page wholly in view
on a desk, perspective, a little rotation, slight curl, a shadow, blur, noise and JPEG;
:func:`blurred` and :func:`darkened` make frames the capture must refuse. :func:`check_rows` scores a
reading (:class:`edge.reports.page.PageText`) against the truth row by row. Everything is reproducible
from a seed. Nothing here is real personal data.

>>> page = make_report(seed=1, layout="ruled")
>>> page.image.mode, len(page.items) > 5
('L', True)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

FONTS = {
    "noto_sans": (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"), 2),
    "noto_serif": (Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"), 2),
    "wqy_microhei": (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 0),
    "wqy_zenhei": (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),
}
"""Font name → (file, face index of simplified Chinese); Debian fonts-noto-cjk, fonts-wqy-microhei/zenhei."""

LAYOUTS = ("ruled", "plain", "two_column", "ultrasound")
DEGRADATIONS = ("scan", "photo", "hard")
"""``scan``: flat page, slight noise; ``photo``: on a desk, perspective, mild blur and shadow; ``hard``: more
perspective and rotation, curl, a darker shadow, more blur, noise and stronger JPEG."""

PAGE_SIZE = (1240, 1754)
"""A4 at 150 dpi."""


@dataclass(frozen=True)
class ItemSpec:
    """One lab item as hospitals print it; ``low``/``high`` is the reference range, ``decimals`` the precision."""

    code: str
    name: str
    abbr: str
    unit: str
    low: float
    high: float
    decimals: int
    upper_only: bool = False  # printed as "<high" (OGTT thresholds)


PANELS: dict[str, tuple[str, tuple[ItemSpec, ...]]] = {
    "cbc": ("血常规", (
        ItemSpec("WBC", "白细胞计数", "WBC", "×10^9/L", 3.5, 9.5, 2),
        ItemSpec("NEUT%", "中性粒细胞百分比", "NEUT%", "%", 40.0, 75.0, 1),
        ItemSpec("LYMPH%", "淋巴细胞百分比", "LYMPH%", "%", 20.0, 50.0, 1),
        ItemSpec("MONO%", "单核细胞百分比", "MONO%", "%", 3.0, 10.0, 1),
        ItemSpec("EO%", "嗜酸性粒细胞百分比", "EO%", "%", 0.4, 8.0, 1),
        ItemSpec("NEUT#", "中性粒细胞绝对值", "NEUT#", "×10^9/L", 1.8, 6.3, 2),
        ItemSpec("LYMPH#", "淋巴细胞绝对值", "LYMPH#", "×10^9/L", 1.1, 3.2, 2),
        ItemSpec("RBC", "红细胞计数", "RBC", "×10^12/L", 3.8, 5.1, 2),
        ItemSpec("HGB", "血红蛋白", "HGB", "g/L", 115, 150, 0),
        ItemSpec("HCT", "红细胞压积", "HCT", "%", 35.0, 45.0, 1),
        ItemSpec("MCV", "平均红细胞体积", "MCV", "fL", 82.0, 100.0, 1),
        ItemSpec("MCH", "平均红细胞血红蛋白含量", "MCH", "pg", 27.0, 34.0, 1),
        ItemSpec("MCHC", "平均红细胞血红蛋白浓度", "MCHC", "g/L", 316, 354, 0),
        ItemSpec("RDW-CV", "红细胞分布宽度", "RDW-CV", "%", 11.5, 14.5, 1),
        ItemSpec("PLT", "血小板计数", "PLT", "×10^9/L", 125, 350, 0),
        ItemSpec("MPV", "平均血小板体积", "MPV", "fL", 7.4, 10.4, 1),
        ItemSpec("PCT", "血小板压积", "PCT", "%", 0.11, 0.28, 2),
    )),
    "liver": ("肝功能", (
        ItemSpec("ALT", "谷丙转氨酶", "ALT", "U/L", 7, 40, 0),
        ItemSpec("AST", "谷草转氨酶", "AST", "U/L", 13, 35, 0),
        ItemSpec("TBIL", "总胆红素", "TBIL", "μmol/L", 0.0, 21.0, 1),
        ItemSpec("DBIL", "直接胆红素", "DBIL", "μmol/L", 0.0, 6.8, 1),
        ItemSpec("TP", "总蛋白", "TP", "g/L", 65.0, 85.0, 1),
        ItemSpec("ALB", "白蛋白", "ALB", "g/L", 40.0, 55.0, 1),
        ItemSpec("GLB", "球蛋白", "GLB", "g/L", 20.0, 40.0, 1),
        ItemSpec("ALP", "碱性磷酸酶", "ALP", "U/L", 35, 100, 0),
        ItemSpec("GGT", "γ-谷氨酰转移酶", "GGT", "U/L", 7, 45, 0),
        ItemSpec("TBA", "总胆汁酸", "TBA", "μmol/L", 0.0, 10.0, 1),
    )),
    "kidney": ("肾功能", (
        ItemSpec("BUN", "尿素", "BUN", "mmol/L", 2.6, 7.5, 2),
        ItemSpec("CREA", "肌酐", "Cr", "μmol/L", 41, 73, 0),
        ItemSpec("UA", "尿酸", "UA", "μmol/L", 155, 357, 0),
        ItemSpec("GLU", "空腹血糖", "GLU", "mmol/L", 3.9, 6.1, 2),
        ItemSpec("K", "钾", "K", "mmol/L", 3.5, 5.3, 2),
        ItemSpec("NA", "钠", "Na", "mmol/L", 137.0, 147.0, 1),
        ItemSpec("CL", "氯", "Cl", "mmol/L", 99.0, 110.0, 1),
        ItemSpec("CA", "钙", "Ca", "mmol/L", 2.11, 2.52, 2),
    )),
    "ogtt": ("葡萄糖耐量试验", (
        ItemSpec("GLU0", "空腹血糖", "GLU0", "mmol/L", 0.0, 5.1, 2, upper_only=True),
        ItemSpec("GLU1H", "餐后1小时血糖", "GLU1h", "mmol/L", 0.0, 10.0, 2, upper_only=True),
        ItemSpec("GLU2H", "餐后2小时血糖", "GLU2h", "mmol/L", 0.0, 8.5, 2, upper_only=True),
    )),
}
"""Panel key → (title, items)."""

ULTRASOUND: tuple[tuple[str, str, str, str, float, float, int], ...] = (
    ("BPD", "双顶径", "BPD", "mm", 70, 98, 0),
    ("HC", "头围", "HC", "mm", 260, 345, 0),
    ("AC", "腹围", "AC", "mm", 230, 350, 0),
    ("FL", "股骨长", "FL", "mm", 52, 76, 0),
    ("AFI", "羊水指数", "AFI", "cm", 5.0, 25.0, 1),
    ("FHR", "胎心率", "FHR", "次/分", 110, 160, 0),
)
"""Obstetric measurements: (code, name, abbreviation, unit, typical low, typical high, decimals)."""

HOSPITALS = ("市妇幼保健院", "人民医院", "第一人民医院", "中心医院", "妇产医院", "中医院", "附属医院")
CITIES = ("杭州", "南京", "成都", "武汉", "西安", "长沙", "济南", "福州", "昆明", "合肥")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林"
GIVEN = "丽娜静敏燕芳婷雪梅霞玲红娟慧颖"


@dataclass(frozen=True)
class TruthItem:
    """One printed result: what the table or measurement line says."""

    code: str
    name: str
    abbr: str
    value: str
    unit: str
    ref: str
    flag: str  # "", "H" or "L"
    type: str = "quantity"  # "text": a finding read from a sentence (placenta, cord, diagnosis …)


@dataclass
class ReportPage:
    """A generated page: the clean image, its ground truth and, after :func:`photograph`, the photo."""

    seed: int
    layout: str
    font: str
    panel: str
    image: Image.Image
    items: list[TruthItem]
    kind: str  # "lab" or "ultrasound"
    columns: tuple[str, ...] = ()  # table column roles left to right: name, abbr, value, flag, unit, ref
    narrative: list[str] = field(default_factory=list)  # ultrasound findings and conclusion lines
    drawn: list[Drawn] = field(default_factory=list)  # every piece of text drawn (for ground-truth lines)
    frame: np.ndarray | None = None  # BGR photo
    degradation: str = ""
    corners: np.ndarray | None = None  # page corners in the frame (tl, tr, br, bl)


# -- values -------------------------------------------------------------------------------------------------

def _fmt(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def _value(rng: np.random.Generator, spec: ItemSpec, abnormal: bool) -> tuple[str, str]:
    """A printed value and its flag."""
    span = spec.high - spec.low
    for _ in range(20):
        if abnormal and spec.upper_only:
            x = rng.uniform(spec.high * 1.02, spec.high * 1.5)
        elif abnormal:
            floor = max(spec.low * 0.45, 10 ** -spec.decimals)
            go_low = rng.random() >= 0.6 and spec.low - 0.03 * span > floor
            x = (rng.uniform(floor, spec.low - 0.03 * span) if go_low
                 else rng.uniform(spec.high + 0.03 * span, spec.high + 0.5 * span))
        elif spec.upper_only:
            x = rng.uniform(spec.high * 0.6, spec.high * 0.97)
        else:
            x = rng.uniform(spec.low + 0.05 * span, spec.high - 0.05 * span)
        text = _fmt(x, spec.decimals)
        v = float(text)
        flag = "H" if v > spec.high else "L" if v < spec.low else ""
        if (flag != "") == abnormal and v > 0:
            return text, flag
    return _fmt((spec.low + spec.high) / 2, spec.decimals), ""


def _ref(spec: ItemSpec, style: str) -> str:
    if spec.upper_only:
        return f"<{_fmt(spec.high, 1)}"
    lo, hi = _fmt(spec.low, spec.decimals), _fmt(spec.high, spec.decimals)
    return {"dash": f"{lo}-{hi}", "tilde": f"{lo}~{hi}", "double": f"{lo}--{hi}"}[style]


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path, index = FONTS[name]
    return ImageFont.truetype(str(path), size, index=index)


def available_fonts() -> list[str]:
    """The fonts of :data:`FONTS` installed on this machine."""
    return [name for name, (path, _) in FONTS.items() if path.is_file()]


def reading_skip() -> pytest.MarkDecorator:
    """The skip mark for tests that read generated pages: they need Tesseract's chi_sim and eng models
    (Debian tesseract-ocr-chi-sim, tesseract-ocr-eng) and the CJK fonts the generator draws with."""
    from edge.reports.ocr import OcrModelError, report_tessdata

    try:
        report_tessdata()
    except OcrModelError:
        return pytest.mark.skip(reason="Tesseract chi_sim/eng models not installed")
    if not available_fonts():
        return pytest.mark.skip(reason="no CJK fonts installed")
    return pytest.mark.skipif(False, reason="the OCR models and fonts are installed")


# -- drawing ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Drawn:
    """One piece of text as drawn: its box (x0, y0, x1, y1), each character's centre, its size, and the
    confidence a recogniser would read it with (lower under a stamp or on faint print)."""

    text: str
    box: tuple[float, float, float, float]
    xs: tuple[float, ...]
    size: int
    conf: float = 0.97


class _Pen:
    """Draws text on the page with the report's fonts, remembering where (:class:`Drawn`)."""

    def __init__(self, image: Image.Image, font: str, size: int) -> None:
        self.draw = ImageDraw.Draw(image)
        self.drawn: list[Drawn] = []
        self.font_name = font
        self.size = size
        self._cache: dict[int, ImageFont.FreeTypeFont] = {}

    def font(self, size: int | None = None) -> ImageFont.FreeTypeFont:
        size = size or self.size
        if size not in self._cache:
            self._cache[size] = _font(self.font_name, size)
        return self._cache[size]

    def text(self, xy: tuple[float, float], text: str, size: int | None = None, anchor: str = "la",
             fill: int = 0, conf: float = 0.97) -> None:
        font = self.font(size)
        self.draw.text(xy, text, fill=fill, font=font, anchor=anchor)
        if text.strip():
            box = self.draw.textbbox(xy, text, font=font, anchor=anchor)
            x0 = box[0]
            xs = tuple(x0 + self.draw.textlength(text[:i], font=font) + self.draw.textlength(text[i], font=font) / 2
                       for i in range(len(text)))
            self.drawn.append(Drawn(text, (box[0], box[1], box[2], box[3]), xs, size or self.size, conf))

    def width(self, text: str, size: int | None = None) -> float:
        return self.draw.textlength(text, font=self.font(size))

    def line(self, x0: float, y0: float, x1: float, y1: float, width: int = 2) -> None:
        self.draw.line((x0, y0, x1, y1), fill=0, width=width)


def _header(pen: _Pen, rng: np.random.Generator, title: str, y: float) -> float:
    w = PAGE_SIZE[0]
    hospital = CITIES[int(rng.integers(len(CITIES)))] + HOSPITALS[int(rng.integers(len(HOSPITALS)))]
    pen.text((w / 2, y), hospital, size=int(pen.size * 1.5), anchor="ma")
    y += pen.size * 2.1
    pen.text((w / 2, y), title, size=int(pen.size * 1.25), anchor="ma")
    y += pen.size * 2.2
    name = SURNAMES[int(rng.integers(len(SURNAMES)))] + "某" + GIVEN[int(rng.integers(len(GIVEN)))]
    age = int(rng.integers(20, 42))
    sample = int(rng.integers(100000, 999999))
    fields = [[f"姓名: {name}", "性别: 女", f"年龄: {age}岁", f"标本号: {sample}"],
              ["科室: 产科门诊", f"床号: {int(rng.integers(1, 60))}", "标本: 静脉血",
               f"送检日期: 2026-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"]]
    for row in fields:
        for i, text in enumerate(row):
            pen.text((80 + i * 275, y), text)
        y += pen.size * 1.7
    pen.line(60, y, w - 60, y, 2)
    return y + pen.size * 0.8


def _footer(pen: _Pen, rng: np.random.Generator, y: float) -> None:
    w = PAGE_SIZE[0]
    y = max(y + pen.size * 1.5, PAGE_SIZE[1] - 180)
    pen.line(60, y, w - 60, y, 2)
    y += pen.size * 0.7
    pen.text((80, y), f"检验者: {SURNAMES[int(rng.integers(len(SURNAMES)))]}某")
    pen.text((420, y), f"审核者: {SURNAMES[int(rng.integers(len(SURNAMES)))]}某")
    pen.text((760, y), f"报告时间: 2026-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}")
    pen.text((80, y + pen.size * 1.7), "本报告仅对所检测标本负责, 如有疑问请与检验科联系。", size=int(pen.size * 0.85))


class _TooWide(Exception):
    """The table does not fit at this font size."""


_FLAG_TEXT = {"arrow": {"H": "↑", "L": "↓", "": ""}, "letter": {"H": "H", "L": "L", "": ""}}


def _draw_table(pen: _Pen, items: list[TruthItem], columns: tuple[str, ...], x0: float, x1: float, y: float,
                ruled: bool, flags: str, abbr_in_name: bool = True, dry: bool = False) -> float:
    """A result table from ``y``; returns the y below it."""
    headers = {"no": "序号", "name": "检验项目", "abbr": "英文缩写", "value": "结果", "flag": "提示",
               "unit": "单位", "ref": "参考区间"}
    def cell_text(item: TruthItem, c: str) -> str:
        name = item.name if "abbr" in columns or not abbr_in_name else f"{item.name}({item.abbr})"
        text = {"name": name, "abbr": item.abbr, "value": item.value, "flag": _FLAG_TEXT[flags][item.flag],
                "unit": item.unit, "ref": item.ref}.get(c, "")
        if c == "value" and "flag" not in columns and item.flag:
            text = f"{text} {_FLAG_TEXT[flags][item.flag]}"
        return text

    pad = pen.size * 0.35
    need = []
    for c in columns:
        texts = [headers[c]] + ([str(len(items))] if c == "no" else [cell_text(it, c) for it in items])
        need.append(max(pen.width(t) for t in texts) + 2 * pad + pen.size * 0.4)
    if sum(need) > x1 - x0:
        raise _TooWide
    if dry:
        return y
    spare = (x1 - x0) - sum(need)
    xs = [x0]
    for n in need:
        xs.append(xs[-1] + n + spare / len(need))
    row_h = pen.size * (1.75 if ruled else 1.6)

    def draw_row(cells: list[str], top: float) -> None:
        for i, text in enumerate(cells):
            if text:
                pen.text((xs[i] + pad, top + (row_h - pen.size) / 2 - pen.size * 0.12), text)

    top = y
    draw_row([headers[c] for c in columns], y)
    y += row_h
    if not ruled:
        pen.line(x0, top - 4, x1, top - 4, 2)
        pen.line(x0, y, x1, y, 1)
    for n, item in enumerate(items, 1):
        cells = [str(n) if c == "no" else cell_text(item, c) for c in columns]
        draw_row(cells, y)
        y += row_h
    if ruled:
        for k in range(len(items) + 2):
            pen.line(x0, top + k * row_h, x1, top + k * row_h, 1)
        for x in xs:
            pen.line(x, top, x, y, 1)
    else:
        pen.line(x0, y + 3, x1, y + 3, 2)
    return y


def make_report(seed: int, layout: str | None = None, font: str | None = None) -> ReportPage:
    """A clean report page (greyscale, :data:`PAGE_SIZE`) with its ground truth."""
    rng = np.random.default_rng(seed)
    layout = layout or LAYOUTS[seed % len(LAYOUTS)]
    fonts = available_fonts()
    font = font or fonts[int(rng.integers(len(fonts)))]
    image = Image.new("L", PAGE_SIZE, 255)
    size = int(rng.integers(23, 27))
    pen = _Pen(image, font, size)
    if layout == "ultrasound":
        return _ultrasound(rng, seed, font, image, pen)
    panel = ("cbc", "liver", "kidney", "ogtt")[int(rng.integers(4))] if layout != "two_column" else "cbc"
    title, specs = PANELS[panel]
    if panel == "ogtt":
        specs = specs + PANELS["kidney"][1][:2]
    elif layout != "two_column":
        n = int(rng.integers(min(8, len(specs)), len(specs) + 1))
        keep = sorted(rng.choice(len(specs), n, replace=False))
        specs = tuple(specs[i] for i in keep)
    ref_style = ("dash", "tilde", "double")[int(rng.integers(3))]
    abnormal = rng.random(len(specs)) < 0.25
    items = []
    for spec, ab in zip(specs, abnormal):
        value, flag = _value(rng, spec, bool(ab))
        items.append(TruthItem(spec.code, spec.name, spec.abbr, value, spec.unit, _ref(spec, ref_style), flag))
    y = _header(pen, rng, f"{title}检验报告单", 70)
    w = PAGE_SIZE[0]
    if layout == "ruled":
        columns = ("no", "name", "abbr", "value", "flag", "unit", "ref") if rng.random() < 0.5 else \
            ("name", "abbr", "value", "flag", "unit", "ref")
        y = _draw_table(pen, items, columns, 60, w - 60, y + size * 0.6, True, "arrow")
    elif layout == "plain":
        columns = ("no", "name", "value", "unit", "ref") if rng.random() < 0.5 else ("name", "value", "unit", "ref")
        y = _draw_table(pen, items, columns, 60, w - 60, y + size * 0.6, False, "letter")
    else:
        half = (len(items) + 1) // 2
        gap = 50
        y0 = y + size * 0.6
        # the largest print that fits (at least 19 px, 9 pt), with a flag column if possible
        options = [(s, cols) for cols in (("name", "value", "flag", "unit", "ref"), ("name", "value", "unit", "ref"))
                   for s in range(min(size, 24), 18, -1)]
        for size, columns in options:
            pen.size = size
            try:
                for a, b, part in ((30, w / 2 - gap / 2, items[:half]), (w / 2 + gap / 2, w - 30, items[half:])):
                    _draw_table(pen, part, columns, a, b, y0, False, "arrow", False, dry=True)
            except _TooWide:
                continue
            break
        ya = _draw_table(pen, items[:half], columns, 30, w / 2 - gap / 2, y0, False, "arrow", False)
        yb = _draw_table(pen, items[half:], columns, w / 2 + gap / 2, w - 30, y0, False, "arrow", False)
        y = max(ya, yb)
    if layout == "plain" and "no" in columns:
        columns = columns[1:]
    _footer(pen, rng, y)
    roles = tuple(c for c in columns if c != "no")
    return ReportPage(seed, layout, font, panel, image, items, "lab", roles, drawn=pen.drawn)


def _ultrasound(rng: np.random.Generator, seed: int, font: str, image: Image.Image, pen: _Pen) -> ReportPage:
    y = _header(pen, rng, "产科超声检查报告单", 70)
    size = pen.size
    items = []
    for code, name, abbr, unit, lo, hi, dec in ULTRASOUND:
        items.append(TruthItem(code, name, abbr, _fmt(rng.uniform(lo, hi), dec), unit, "", ""))
    pen.text((80, y + size * 0.5), "超声测量:", size=int(size * 1.1))
    y += size * 2.2
    for i in range(0, len(items), 2):
        for j, item in enumerate(items[i:i + 2]):
            pen.text((110 + j * 540, y), f"{item.name}({item.abbr}): {item.value} {item.unit}")
        y += size * 1.8
    weeks = int(rng.integers(24, 40))
    position = ("头位", "臀位")[int(rng.integers(2))]
    wall = ("前壁", "后壁", "宫底")[int(rng.integers(3))]
    grade = ("I", "II", "III")[int(rng.integers(3))]
    narrative = [
        f"宫内可见一胎儿, 胎位{position}, 胎心搏动规律。",
        f"胎盘位于子宫{wall}, 成熟度{grade}级, 厚度约{int(rng.integers(28, 42))}mm。",
        "羊水透声好, 脐带绕颈未见明显异常。",
        "超声提示:",
        f"宫内妊娠, 单活胎, 如孕{weeks}周。",
    ]
    y += size * 0.8
    pen.text((80, y), "超声所见:", size=int(size * 1.1))
    y += size * 2.0
    for text in narrative:
        pen.text((110 if not text.endswith(":") else 80, y), text)
        y += size * 1.8
    _footer(pen, rng, y)
    items += [TruthItem("PLACENTA", "胎盘", "", wall, "", "", "", "text"),
              TruthItem("GRADE", "胎盘成熟度", "", grade, "", "", "", "text"),
              TruthItem("CORD", "脐带绕颈", "", "未见", "", "", "", "text"),
              TruthItem("GA", "孕周", "GA", f"{weeks}周", "wk", "", "", "text"),
              TruthItem("POSITION", "胎方位", "", position, "", "", "", "text")]
    return ReportPage(seed, "ultrasound", font, "ultrasound", image, items, "ultrasound", narrative=narrative,
                      drawn=pen.drawn)


# -- photographing ------------------------------------------------------------------------------------------

FRAME_SIZE = (2250, 3000)
"""Camera frame (portrait, 6.75 MP; the box's 12 MP camera or a phone gives more)."""
_LEVELS = {
    #           corner jitter, rotation deg, curl px, shadow depth, blur sigma, noise, jpeg quality
    "scan": (0.0, 0.0, 0.0, 0.0, 0.4, 2.0, 92),
    "photo": (0.035, 3.0, 2.0, 0.35, 0.6, 4.0, 82),
    "hard": (0.06, 6.0, 5.0, 0.5, 0.9, 6.0, 70),
}


def _desk(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    base = rng.uniform(60, 140, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = 1 + 0.25 * (xx / w - 0.5) + 0.15 * (yy / h - 0.5)
    grain = np.sin(xx / rng.uniform(6, 20) + np.sin(yy / 40) * 3) * 8
    desk = base[None, None, :] * grad[..., None] + grain[..., None]
    return np.clip(desk, 0, 255).astype(np.float32)


def photograph(page: ReportPage, degradation: str, seed: int | None = None,
               frame_size: tuple[int, int] = FRAME_SIZE) -> ReportPage:
    """``page`` with :attr:`ReportPage.frame` set: the page photographed with the named degradation."""
    jitter, rot, curl, shadow, blur, noise, quality = _LEVELS[degradation]
    blur *= frame_size[0] / 1500  # the levels are set for a 1500-pixel-wide frame
    rng = np.random.default_rng(page.seed * 7919 + 17 if seed is None else seed)
    src = np.asarray(page.image, dtype=np.float32)
    ph, pw = src.shape
    curl *= PAGE_SIZE[0] / 1240
    if curl:  # slight curl: rows bend with a smooth wave across the page
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        amp = curl * rng.uniform(0.6, 1.0)
        map_y = yy + amp * np.sin(np.pi * xx / pw + rng.uniform(-0.5, 0.5)) * (0.5 + yy / ph)
        src = cv2.remap(src, xx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    fw, fh = frame_size
    if degradation == "scan":
        scale = min(fw / pw, fh / ph)
        corners = np.float32([[0, 0], [pw * scale, 0], [pw * scale, ph * scale], [0, ph * scale]])
        corners += np.float32([(fw - pw * scale) / 2, (fh - ph * scale) / 2])
        # a flat scan fills the frame: no desk, the page's margin is the border
        m = cv2.getPerspectiveTransform(np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]]), corners)
        warped = cv2.warpPerspective(src, m, (fw, fh), flags=cv2.INTER_AREA, borderValue=255)
        colour = np.repeat(warped[..., None], 3, axis=2)
    else:
        for _ in range(50):  # the whole page in view, as the station asks
            fill = rng.uniform(0.78, 0.9)
            scale = min(fw * fill / pw, fh * fill / ph)
            cw, chh = pw * scale, ph * scale
            cx, cy = fw / 2 + rng.uniform(-0.03, 0.03) * fw, fh / 2 + rng.uniform(-0.03, 0.03) * fh
            a = np.deg2rad(rng.uniform(-rot, rot))
            base = np.float32([[-cw / 2, -chh / 2], [cw / 2, -chh / 2], [cw / 2, chh / 2], [-cw / 2, chh / 2]])
            rotm = np.float32([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            corners = base @ rotm.T + np.float32([cx, cy])
            corners += rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * np.float32([cw, chh])
            if (corners.min(axis=0) > 0.01 * fw).all() and (corners[:, 0] < 0.99 * fw).all() \
                    and (corners[:, 1] < fh - 0.01 * fw).all():
                break
        m = cv2.getPerspectiveTransform(np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]]), corners)
        paper = rng.uniform(225, 250) * np.float32([rng.uniform(0.97, 1.0), rng.uniform(0.98, 1.0), 1.0])
        warped = cv2.warpPerspective(src, m, (fw, fh), flags=cv2.INTER_AREA, borderValue=0)
        mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (fw, fh), flags=cv2.INTER_LINEAR)
        ink = warped / 255.0
        page_rgb = ink[..., None] * paper[None, None, :]
        desk = _desk(rng, frame_size)
        colour = page_rgb * mask[..., None] + desk * (1 - mask[..., None])
    # shadow: a soft dark band (a hand or the phone) from one side, plus vignetting
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    light = np.ones((fh, fw), np.float32)
    if shadow:
        angle = rng.uniform(0, 2 * np.pi)
        d = (xx - fw / 2) * np.cos(angle) + (yy - fh / 2) * np.sin(angle)
        edge = rng.uniform(0.05, 0.35) * max(fw, fh)
        light *= 1 - shadow * rng.uniform(0.6, 1.0) / (1 + np.exp(-(d - edge) / (0.04 * max(fw, fh))))
        r2 = ((xx - fw / 2) / fw) ** 2 + ((yy - fh / 2) / fh) ** 2
        light *= 1 - 0.25 * r2
    colour = colour * light[..., None]
    if blur:
        colour = cv2.GaussianBlur(colour, (0, 0), blur * rng.uniform(0.8, 1.2))
    colour += rng.normal(0, noise, colour.shape).astype(np.float32)
    bgr = np.clip(colour[..., ::-1], 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    page.frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    page.degradation = degradation
    page.corners = corners
    return page


def blurred(frame: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    """The frame badly out of focus."""
    return cv2.GaussianBlur(frame, (0, 0), sigma)


def darkened(frame: np.ndarray, factor: float = 0.12) -> np.ndarray:
    """The frame taken in a dark room (little light, more noise)."""
    rng = np.random.default_rng(0)
    dark = frame.astype(np.float32) * factor + rng.normal(0, 2.0, frame.shape)
    return np.clip(dark, 0, 255).astype(np.uint8)


def sample_reports(n: int, seed: int = 0, degradations: tuple[str, ...] = DEGRADATIONS) -> Iterator[ReportPage]:
    """``n`` photographed pages cycling through every layout × degradation (fonts chosen by the seed)."""
    combos = [(lay, deg) for deg in degradations for lay in LAYOUTS]
    for i in range(n):
        layout, degradation = combos[i % len(combos)]
        yield photograph(make_report(seed + i, layout), degradation)


def jpeg_bytes(frame: np.ndarray, quality: int = 90) -> bytes:
    """The frame as a JPEG file's bytes (for CLI tests)."""
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(buf)


# -- scoring a reading against the truth ---------------------------------------------------------------------

FLAG_MARKS = {"H": ("↑", "H"), "L": ("↓", "L")}


@dataclass
class RowCheck:
    """How one printed item was read: found (its name on a row or line), and each field exactly right."""

    item: TruthItem
    found: bool = False
    value: bool = False
    flag: bool = False
    unit: bool = False
    ref: bool = False
    read: tuple[str, ...] = ()  # the row's cell texts (or the line), for failure messages


def _squash(text: str) -> str:
    return "".join(text.split()).replace("：", ":").replace("（", "(").replace("）", ")")


def _split_flag(text: str) -> tuple[str, str]:
    """A value cell's text without a trailing flag, and the flag ("H", "L" or "")."""
    t = _squash(text)
    for flag, marks in FLAG_MARKS.items():
        for m in marks:
            if t.endswith(m) and len(t) > len(m):
                return t[: -len(m)], flag
    return t, ""


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _range(text: str) -> str:
    """A reference range with its separator written one way (``-``, ``--``, ``~`` and ``～`` are the same)."""
    return re.sub(r"(?<=\d)(--|~|～|-)(?=\d)", "-", text)


def check_rows(page_text, report: ReportPage) -> list[RowCheck]:  # noqa: ANN001 - a PageText
    """Each truth item of ``report`` looked up in a :class:`edge.reports.page.PageText` reading.

    An item is *found* on the row (lab tables) or line (ultrasound) whose name is most like the printed
    name (similarity at least 0.6, so a misread character or two still finds it; the structuring stage
    matches names against its catalogue the same forgiving way) or that shows its abbreviation. On a lab
    row the value is right when a cell reads exactly the printed value (a trailing flag split off), the
    flag when the row shows the printed flag and no other, the unit and the range when a cell equals
    them (range separators ``-``/``--``/``~`` taken as one). On an ultrasound line the text after the
    colon must read exactly ``value unit``."""
    checks = []
    if report.kind == "ultrasound":
        lines = [_squash(ln.text) for ln in page_text.lines]
        for item in report.items:
            if item.type == "text":
                continue
            rc = RowCheck(item)
            best, score = None, 0.6
            for text in lines:
                key = text.split(":", 1)[0]
                sim = max(_similar(key, _squash(f"{item.name}({item.abbr})")), _similar(key[:len(item.name)], item.name))
                if sim >= score:
                    best, score = text, sim
            if best is not None:
                rc.found, rc.read = True, (best,)
                after = best.split(":", 1)[1] if ":" in best else ""
                rc.value = after.startswith(item.value) and not after[len(item.value):][:1].isdigit() \
                    and after[len(item.value):][:1] != "."
                rc.unit = after.endswith(_squash(item.unit))
                rc.ref = rc.flag = True  # nothing printed
            checks.append(rc)
        return checks
    rows = [row for table in page_text.tables for row in table.rows]
    for item in report.items:
        rc = RowCheck(item)
        names = (_squash(item.name), _squash(f"{item.name}({item.abbr})"))
        best, score = None, 0.6
        for row in rows:
            texts = [_squash(c.text) for c in row.cells]
            sim = max((_similar(t, n) for t in texts for n in names), default=0.0)
            if any(t == item.abbr or t.endswith(f"({item.abbr})") for t in texts):
                sim = max(sim, 0.9)
            if sim > score:
                best, score = row, sim
        if best is not None:
            texts = [_squash(c.text) for c in best.cells]
            rc.found, rc.read = True, tuple(c.text for c in best.cells)
            flags = set()
            for t in texts:
                v, f = _split_flag(t)
                if v == item.value:
                    rc.value = True
                if f and v and v[-1].isdigit():
                    flags.add(f)
                elif t in ("↑", "↓", "H", "L"):
                    flags.add({"↑": "H", "↓": "L"}.get(t, t))
            rc.flag = flags == ({item.flag} if item.flag else set())
            rc.unit = _squash(item.unit) in texts
            rc.ref = _range(_squash(item.ref)) in [_range(t) for t in texts]
        checks.append(rc)
    return checks


# -- layout families ---------------------------------------------------------------------------------------

FAMILIES = ("ruled", "plain", "two_column", "ultrasound", "bilingual", "row_numbers", "merged_cells",
            "prose_ultrasound", "stamped", "thermal", "english", "triple", "dotted", "discharge", "circled",
            "leaders")
"""Every layout family the generator draws (:func:`make_report` takes any of them). A new family goes at the
end: a family's pages are drawn from a seed derived from its position here."""
HELD_OUT = ("english", "triple", "dotted", "discharge", "circled")
"""Families kept out of tuning: the structuring is never adjusted to their failures; bench/ocr.py reports
them apart, and only one smoke test reads them."""
TUNED = tuple(f for f in FAMILIES if f not in HELD_OUT)

NAME_VARIANTS: dict[str, tuple[str, ...]] = {
    "WBC": ("白细胞计数(WBC)", "白细胞数", "白细胞"),
    "NEUT%": ("中性粒细胞%", "中性粒细胞比率", "中性粒细胞百分比(NEUT%)"),
    "LYMPH%": ("淋巴细胞%", "淋巴细胞比率", "淋巴细胞百分比(LYMPH%)"),
    "MONO%": ("单核细胞百分比(MO%)", "单核细胞%", "单核细胞比率"),
    "EO%": ("嗜酸性粒细胞%", "嗜酸性粒细胞比率"),
    "NEUT#": ("中性粒细胞#", "中性粒细胞数", "中性粒细胞绝对值(NEUT#)"),
    "LYMPH#": ("淋巴细胞#", "淋巴细胞数", "淋巴细胞绝对值"),
    "RBC": ("红细胞计数(RBC)", "红细胞数"),
    "HGB": ("血红蛋白(HGB)", "血红蛋白浓度"),
    "PLT": ("血小板计数(PLT)", "血小板数"),
}
"""Other ways hospitals print a name (bracketed abbreviation, ``#``/``%``, 比率, 数)."""
ENGLISH: dict[str, str] = {
    "WBC": "White blood cell count", "NEUT%": "Neutrophils %", "LYMPH%": "Lymphocytes %", "MONO%": "Monocytes %",
    "EO%": "Eosinophils %", "NEUT#": "Neutrophils #", "LYMPH#": "Lymphocytes #", "RBC": "Red blood cell count",
    "HGB": "Hemoglobin", "HCT": "Hematocrit", "MCV": "Mean corpuscular volume", "MCH": "Mean corpuscular Hb",
    "MCHC": "Mean corpuscular Hb conc.", "RDW-CV": "RBC distribution width", "PLT": "Platelet count",
    "MPV": "Mean platelet volume", "PCT": "Plateletcrit", "ALT": "Alanine aminotransferase",
    "AST": "Aspartate aminotransferase", "TBIL": "Total bilirubin", "DBIL": "Direct bilirubin",
    "TP": "Total protein", "ALB": "Albumin", "GLB": "Globulin", "ALP": "Alkaline phosphatase",
    "GGT": "Gamma-glutamyl transferase", "TBA": "Total bile acids", "BUN": "Urea", "CREA": "Creatinine",
    "UA": "Uric acid", "GLU": "Fasting glucose", "K": "Potassium", "NA": "Sodium", "CL": "Chloride", "CA": "Calcium",
}
"""English names as English-language reports print them."""
UNIT_SPELLINGS = {"×10^9/L": ("×10^9/L", "10^9/L", "10~9/L", "×10⁹/L", "10*9/L", "x10^9/L"),
                  "×10^12/L": ("×10^12/L", "10^12/L", "10~12/L", "×10¹²/L", "10*12/L", "x10^12/L")}
STAMP_TEXTS = ("检验专用章", "报告专用章", "超声科专用章")


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _unit(rng: np.random.Generator, unit: str, spell: bool) -> str:
    return _pick(rng, UNIT_SPELLINGS[unit]) if spell and unit in UNIT_SPELLINGS else unit


def _panel_items(rng: np.random.Generator, panel: str | None = None, n: int | None = None,
                 ref_style: str | None = None) -> tuple[str, list[TruthItem]]:
    panel = panel or _pick(rng, ("cbc", "liver", "kidney"))
    title, specs = PANELS[panel]
    if n is not None and n < len(specs):
        keep = sorted(rng.choice(len(specs), n, replace=False))
        specs = tuple(specs[i] for i in keep)
    style = ref_style or _pick(rng, ("dash", "tilde", "double"))
    abnormal = rng.random(len(specs)) < 0.25
    items = []
    for spec, ab in zip(specs, abnormal):
        value, flag = _value(rng, spec, bool(ab))
        items.append(TruthItem(spec.code, spec.name, spec.abbr, value, spec.unit, _ref(spec, style), flag))
    return title, items


def _grid(pen: _Pen, header: list[str] | None, rows: list[list[str]], x0: float, x1: float, y: float,
          ruled: bool, marks: list[tuple[int, int]] | None = None) -> tuple[float, list[float]]:
    """A table of the given texts from ``y``; returns the y below it and the column edges."""
    pad = pen.size * 0.35
    ncol = max(len(r) for r in rows + ([header] if header else []))
    need = [0.0] * ncol
    for r in rows + ([header] if header else []):
        for i, t in enumerate(r):
            need[i] = max(need[i], pen.width(t) + 2 * pad + pen.size * 0.6)
    if sum(need) > x1 - x0:
        raise _TooWide
    spare = (x1 - x0) - sum(need)
    xs = [x0]
    for n in need:
        xs.append(xs[-1] + n + spare / ncol)
    row_h = pen.size * (1.75 if ruled else 1.6)
    top = y
    for r in ([header] if header else []) + rows:
        for i, t in enumerate(r):
            if t:
                pen.text((xs[i] + pad, y + (row_h - pen.size) / 2 - pen.size * 0.12), t)
        y += row_h
    if ruled:
        for k in range(int(round((y - top) / row_h)) + 1):
            pen.line(x0, top + k * row_h, x1, top + k * row_h, 1)
        for x in xs:
            pen.line(x, top, x, y, 1)
    else:
        pen.line(x0, top - 4, x1, top - 4, 2)
        if header:
            pen.line(x0, top + row_h, x1, top + row_h, 1)
        pen.line(x0, y + 3, x1, y + 3, 2)
    for r, c in marks or ():
        k = r + (1 if header else 0)
        cy = top + k * row_h + row_h / 2
        pen.draw.ellipse((xs[c] + 2, cy - row_h * 0.55, xs[c + 1] - 2, cy + row_h * 0.55), outline=60, width=2)
    return y, xs


def _flag_mark(item: TruthItem, arrows: bool) -> str:
    return _FLAG_TEXT["arrow" if arrows else "letter"][item.flag]


def _fit(pen: _Pen, draw) -> float:  # noqa: ANN001 - a callable drawing at pen.size, raising _TooWide
    """Draw with the largest print (from the pen's size down to 15 px) that fits."""
    for size in range(pen.size, 14, -1):
        pen.size = size
        try:
            return draw(dry=True) and draw(dry=False)
        except _TooWide:
            continue
    raise _TooWide


def _stamp(pen: _Pen, rng: np.random.Generator, cx: float, cy: float) -> None:
    """A round stamp over the text (faint ring, its text around the top) and a handwritten stroke."""
    r = pen.size * 3.2
    pen.draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=120, width=4)
    pen.draw.ellipse((cx - r * 0.35, cy - r * 0.35, cx + r * 0.35, cy + r * 0.35), outline=140, width=3)
    pen.text((cx, cy + r * 0.45), _pick(rng, STAMP_TEXTS), size=int(pen.size * 0.8), anchor="ma", fill=120,
             conf=0.45)
    pts = [(cx - r * 1.5 + k * r * 0.25, cy + r * 0.9 + np.sin(k * 1.3) * pen.size * 0.5) for k in range(14)]
    pen.draw.line(pts, fill=70, width=3)


def _lab_family(rng: np.random.Generator, seed: int, font: str, image: Image.Image, pen: _Pen,
                family: str) -> ReportPage:
    size = pen.size
    w = PAGE_SIZE[0]
    if family == "thermal":
        pen.size = size = int(rng.integers(19, 22))
    if family in ("triple",):
        title, items = _panel_items(rng, "cbc", ref_style="dash")
        extra = _panel_items(rng, "liver", n=6, ref_style="dash")[1]
        items += extra
    else:
        title, items = _panel_items(rng, "cbc" if family in ("row_numbers", "english", "circled") else None)
    y = _header(pen, rng, f"{title}检验报告单" if family != "english" else "Laboratory Report 检验报告", 70)
    y0 = y + size * 0.6
    arrows = rng.random() < 0.5
    marks: list[tuple[int, int]] = []
    printed: list[TruthItem] = []
    fill_low = family == "thermal"

    def name_of(it: TruthItem) -> str:
        return _pick(rng, NAME_VARIANTS[it.code]) if it.code in NAME_VARIANTS and rng.random() < 0.6 else it.name

    if family == "bilingual":
        header = ["Code", "Item 项目", "Result 结果", "Flag", "Unit 单位", "Reference 参考值"]
        rows = [[it.abbr, it.name, it.value, _flag_mark(it, arrows), it.unit, it.ref] for it in items]
        y, _ = _grid(pen, header, rows, 60, w - 60, y0, rng.random() < 0.5)
    elif family == "row_numbers":
        style = _pick(rng, ("{n}.", "{n}、", "No.{n}"))
        header = ["项目", "结果", "单位", "参考范围"]
        rows = [[f"{style.format(n=n)} {name_of(it)}" if style.startswith("No") else f"{style.format(n=n)}{name_of(it)}",
                 f"{it.value} {_flag_mark(it, True)}".strip(), _unit(rng, it.unit, True), it.ref]
                for n, it in enumerate(items, 1)]
        y, _ = _grid(pen, header, rows, 60, w - 60, y0, False)
    elif family == "merged_cells":
        header = ["检验项目", "结果 / 参考区间", "单位"]
        rows = [[name_of(it), f"{it.value}{_flag_mark(it, arrows)}  ({it.ref})" if rng.random() < 0.5
                 else f"{it.value} {_flag_mark(it, arrows)}  {it.ref}".replace("  ", " ", 1 if not it.flag else 0),
                 it.unit] for it in items]
        y, _ = _grid(pen, header, rows, 60, w - 60, y0, rng.random() < 0.5)
    elif family == "stamped":
        header = ["检验项目", "结果", "提示", "单位", "参考区间"]
        rows = [[it.name, it.value, _flag_mark(it, arrows), it.unit, it.ref] for it in items]
        top = y0
        y, _ = _grid(pen, header, rows, 60, w - 60, y0, rng.random() < 0.5)
        _stamp(pen, rng, float(rng.uniform(300, w - 300)), float(rng.uniform(top + 60, y - 40)))
    elif family == "thermal":
        rows = [[it.name, f"{it.value}{_flag_mark(it, True)}", _unit(rng, it.unit, True), it.ref] for it in items]
        y, _ = _grid(pen, None, rows, 260, w - 260, y0, False)
    elif family == "english":
        header = ["Test", "Abbr.", "Result", "Units", "Ref. Range", "H/L"]
        rows = [[ENGLISH.get(it.code, it.abbr), it.abbr, it.value, _unit(rng, it.unit, True).replace("×", "x"),
                 it.ref, _flag_mark(it, False)] for it in items]
        y, _ = _grid(pen, header, rows, 60, w - 60, y0, rng.random() < 0.5)
    elif family == "triple":
        third = (len(items) + 2) // 3
        parts = [items[:third], items[third:2 * third], items[2 * third:]]
        gap = 30
        width = (w - 60 - 2 * gap) / 3
        for s in range(min(size, 22), 13, -1):
            pen.size = s
            try:
                for k, part in enumerate(parts):
                    hdr = ["项目", "结果", "参考值"]
                    rows = [[it.name if len(it.name) <= 7 else it.abbr, f"{it.value}{_flag_mark(it, True)}", it.ref]
                            for it in part]
                    _grid(pen, hdr, rows, 30 + k * (width + gap), 30 + k * (width + gap) + width, y0, False)
            except _TooWide:
                pen.draw.rectangle((0, y0 - 10, w, PAGE_SIZE[1]), fill=255)
                pen.drawn = [d for d in pen.drawn if d.box[1] < y0 - 10]
                continue
            break
        ys = []
        pen.draw.rectangle((0, y0 - 10, w, PAGE_SIZE[1]), fill=255)
        pen.drawn = [d for d in pen.drawn if d.box[1] < y0 - 10]
        for k, part in enumerate(parts):
            rows = [[it.name if len(it.name) <= 7 else it.abbr, f"{it.value}{_flag_mark(it, True)}", it.ref]
                    for it in part]
            yk, _ = _grid(pen, ["项目", "结果", "参考值"], rows, 30 + k * (width + gap),
                          30 + k * (width + gap) + width, y0, False)
            ys.append(yk)
        y = max(ys)
    elif family == "dotted":
        yy = y0
        pen.line(60, yy - 4, w - 60, yy - 4, 2)
        x_val, x_unit, x_ref = 620, 780, 960
        for it in items:
            name = f"{name_of(it)} "
            dots = "." * max(3, int((x_val - 20 - 80 - pen.width(name)) / max(1.0, pen.width("."))))
            pen.text((80, yy), name + dots)
            pen.text((x_val, yy), f"{it.value} {_flag_mark(it, True)}".strip())
            pen.text((x_unit, yy), _unit(rng, it.unit, True))
            pen.text((x_ref, yy), it.ref.replace("--", "-").replace("-", "～") if rng.random() < 0.5 else it.ref)
            yy += size * 1.6
        y = yy
    elif family == "circled":
        header = ["序号", "检验项目", "结果", "单位", "参考区间"]
        rows, marks = [], []
        long_names = {"平均红细胞血红蛋白含量": ("平均红细胞血", "红蛋白含量"), "平均红细胞血红蛋白浓度": ("平均红细胞血", "红蛋白浓度"),
                      "嗜酸性粒细胞百分比": ("嗜酸性粒细胞", "百分比"), "中性粒细胞百分比": ("中性粒细胞", "百分比")}
        for n, it in enumerate(items, 1):
            split = long_names.get(it.name)
            if split and rng.random() < 0.7:
                rows.append(["", split[0], "", "", ""])
                rows.append([str(n), split[1], f"{it.value}{_flag_mark(it, True)}", it.unit, it.ref])
            else:
                rows.append([str(n), it.name, f"{it.value}{_flag_mark(it, True)}", it.unit, it.ref])
            if it.flag:
                marks.append((len(rows) - 1, 2))
        y, xs = _grid(pen, header, rows, 60, w - 60, y0, False, marks)
        for r, _ in marks:  # a handwritten tick beside a circled value
            pen.text((xs[3] - pen.size * 0.9, y0 + (r + 1) * pen.size * 1.6), "√", fill=60, conf=0.5)
    printed = items
    _footer(pen, rng, y)
    if fill_low:  # a thermal printout: faint grey print on bright paper
        arr = np.asarray(image, dtype=np.float32)
        image.paste(Image.fromarray(np.clip(255 - (255 - arr) * 0.45, 0, 255).astype(np.uint8)))
    return ReportPage(seed, family, font, title, image, printed, "lab", drawn=pen.drawn)


def _prose_ultrasound(rng: np.random.Generator, seed: int, font: str, image: Image.Image, pen: _Pen) -> ReportPage:
    y = _header(pen, rng, "产科彩超检查报告单", 70)
    size = pen.size
    cm = {k: rng.uniform(lo, hi) / 10 for k, _, _, _, lo, hi, _ in ULTRASOUND[:4]}
    vals = {k: f"{v:.1f}" for k, v in cm.items()}
    fhr = str(int(rng.integers(118, 158)))
    efw = str(int(rng.integers(1500, 3900)))
    fluid_key, fluid_name = _pick(rng, (("AFI", "羊水指数"), ("DVP", "羊水最大深度")))
    fluid = f"{rng.uniform(3.0, 7.5) if fluid_key == 'DVP' else rng.uniform(8.0, 20.0):.1f}"
    wall = _pick(rng, ("前壁", "后壁", "宫底", "左侧壁"))
    grade = _pick(rng, ("I", "II", "III"))
    weeks, days = int(rng.integers(26, 40)), int(rng.integers(0, 7))
    position = _pick(rng, ("头位", "臀位"))
    cord = _pick(rng, ("未见", "1周", "2周"))
    cord_text = {"未见": "未见脐带绕颈", "1周": "胎儿颈部可见脐带绕颈一周", "2周": "胎儿颈部可见脐带绕颈两周"}[cord]
    ga = f"{weeks}+{days}周" if days else f"{weeks}周"
    text = (f"超声所见：宫内可见一胎儿，胎位：{position}。双顶径(BPD)约{vals['BPD']}cm，头围(HC)约{vals['HC']}cm，"
            f"腹围(AC)约{vals['AC']}cm，股骨长(FL)约{vals['FL']}cm，估计胎儿体重约{efw}g。胎心率约{fhr}次/分，"
            f"律齐。胎盘位于子宫{wall}，成熟度{grade}级。{fluid_name}约{fluid}cm。{cord_text}。")
    conclusion = f"超声提示：宫内妊娠，单活胎，如孕{ga}。"
    y += size * 0.8
    width = PAGE_SIZE[0] - 200
    for para in (text, conclusion):
        line = ""
        for ch in para:
            if pen.width(line + ch) > width:
                pen.text((100, y), line)
                y += size * 1.8
                line = ""
            line += ch
        if line:
            pen.text((100, y), line)
            y += size * 1.8
        y += size * 0.6
    _footer(pen, rng, y)
    items = [TruthItem(k, n, a, vals[k], "cm", "", "") for k, n, a, *_ in ULTRASOUND[:4]]
    items += [TruthItem("EFW", "估计胎儿体重", "EFW", efw, "g", "", ""),
              TruthItem("FHR", "胎心率", "FHR", fhr, "次/分", "", ""),
              TruthItem(fluid_key, "羊水指数" if fluid_key == "AFI" else "最大羊水池深度", fluid_key, fluid, "cm", "", ""),
              TruthItem("PLACENTA", "胎盘", "", wall, "", "", "", "text"),
              TruthItem("GRADE", "胎盘成熟度", "", grade, "", "", "", "text"),
              TruthItem("CORD", "脐带绕颈", "", cord, "", "", "", "text"),
              TruthItem("GA", "孕周", "GA", ga, "wk", "", "", "text"),
              TruthItem("POSITION", "胎方位", "", position, "", "", "", "text")]
    return ReportPage(seed, "prose_ultrasound", font, "ultrasound", image, items, "ultrasound",
                      narrative=[text, conclusion], drawn=pen.drawn)


def _discharge(rng: np.random.Generator, seed: int, font: str, image: Image.Image, pen: _Pen) -> ReportPage:
    y = _header(pen, rng, "出院记录", 70)
    size = pen.size
    hgb = str(int(rng.integers(85, 135)))
    plt = str(int(rng.integers(90, 320)))
    wbc = f"{rng.uniform(4.0, 14.0):.2f}"
    weeks, days = int(rng.integers(36, 41)), int(rng.integers(0, 7))
    diagnoses = [f"宫内孕{weeks}+{days}周 G{int(rng.integers(1, 4))}P1 已产", _pick(rng, ("妊娠期糖尿病", "妊娠期高血压",
                                                                                     "轻度贫血", "胎膜早破")),
                 _pick(rng, ("瘢痕子宫", "脐带绕颈", "羊水过少", "甲状腺功能减退"))]
    paras = [("入院情况：", f"孕妇因停经{weeks}+{days}周，下腹阵痛3小时入院。入院查血常规：白细胞计数{wbc}×10^9/L，"
                         f"血红蛋白{hgb}g/L，血小板计数{plt}×10^9/L。"),
             ("诊疗经过：", "入院后完善相关检查，于入院当日经阴道分娩一活婴，产程顺利，产后恢复好。")]
    width = PAGE_SIZE[0] - 200
    for head, body in paras:
        pen.text((80, y), head, size=int(size * 1.05))
        y += size * 1.8
        line = ""
        for ch in body:
            if pen.width(line + ch) > width:
                pen.text((100, y), line)
                y += size * 1.8
                line = ""
            line += ch
        if line:
            pen.text((100, y), line)
            y += size * 1.8
        y += size * 0.5
    pen.text((80, y), "出院诊断：", size=int(size * 1.05))
    y += size * 1.8
    for n, d in enumerate(diagnoses, 1):
        pen.text((100, y), f"{n}. {d}")
        y += size * 1.8
    y += size * 0.5
    pen.text((80, y), "出院医嘱：注意休息，产后42天复查。")
    _footer(pen, rng, y + size * 1.8)
    items = [TruthItem("WBC", "白细胞计数", "WBC", wbc, "×10^9/L", "", ""),
             TruthItem("HGB", "血红蛋白", "HGB", hgb, "g/L", "", ""),
             TruthItem("PLT", "血小板计数", "PLT", plt, "×10^9/L", "", "")]
    items += [TruthItem("DX", "出院诊断", "", d, "", "", "", "text") for d in diagnoses]
    return ReportPage(seed, "discharge", font, "summary", image, items, "summary", narrative=diagnoses,
                      drawn=pen.drawn)


LEADER_CHARS = ("·", "…", "-", "_", "．", "。", "‥")
"""What fills the space between a name and its value on a leader-style list."""


def _leaders(rng: np.random.Generator, seed: int, font: str, image: Image.Image, pen: _Pen) -> ReportPage:
    """A list report: each item on a line, its name joined to the value by a leader of one repeated mark
    (middle dots, ellipses, dashes, underscores, full-width stops), the value column placed where the
    hospital's template put it; a title row on half the pages, two-line names sometimes."""
    w = PAGE_SIZE[0]
    title, items = _panel_items(rng)
    y = _header(pen, rng, f"{title}检验报告", 70)
    size = pen.size
    mark = _pick(rng, LEADER_CHARS)
    spaced = rng.random() < 0.4  # "· · · ·" rather than "····"
    arrows = rng.random() < 0.5
    x_name = float(rng.uniform(70, 130))
    x_val = float(rng.uniform(540, 660))
    x_unit = x_val + float(rng.uniform(150, 210))
    x_ref = x_unit + float(rng.uniform(150, 200))
    step = size * float(rng.uniform(1.55, 1.95))
    y += size * 0.5
    if rng.random() < 0.5:
        for x, t in ((x_name, _pick(rng, ("检验项目", "项目名称", "项目"))), (x_val, "结果"), (x_unit, "单位"),
                     (x_ref, _pick(rng, ("参考值", "参考范围", "参考区间")))):
            pen.text((x, y), t)
        y += step
        pen.line(60, y - size * 0.35, w - 60, y - size * 0.35, 1)
    for it in items:
        name = _pick(rng, NAME_VARIANTS[it.code]) if it.code in NAME_VARIANTS and rng.random() < 0.5 else it.name
        unit_w = pen.width(mark + (" " if spaced else ""))
        n_marks = max(3, int((x_val - size * 0.8 - x_name - pen.width(name + " ")) / max(1.0, unit_w)))
        leader = (mark + " ") * n_marks if spaced else mark * n_marks
        pen.text((x_name, y), f"{name} {leader.rstrip()}")
        pen.text((x_val, y), f"{it.value} {_flag_mark(it, arrows)}".strip())
        pen.text((x_unit, y), _unit(rng, it.unit, True))
        pen.text((x_ref, y), it.ref)
        y += step
    _footer(pen, rng, y)
    return ReportPage(seed, "leaders", font, title, image, items, "lab", drawn=pen.drawn)


def make_family(seed: int, family: str, font: str | None = None) -> ReportPage:
    """A clean page of one of the :data:`FAMILIES` (greyscale, :data:`PAGE_SIZE`) with its ground truth."""
    if family in LAYOUTS:
        return make_report(seed, family, font)
    rng = np.random.default_rng(seed * 31 + FAMILIES.index(family))
    fonts = available_fonts()
    font = font or fonts[int(rng.integers(len(fonts)))]
    image = Image.new("L", PAGE_SIZE, 255)
    pen = _Pen(image, font, int(rng.integers(23, 27)))
    if family == "prose_ultrasound":
        return _prose_ultrasound(rng, seed, font, image, pen)
    if family == "discharge":
        return _discharge(rng, seed, font, image, pen)
    if family == "leaders":
        return _leaders(rng, seed, font, image, pen)
    return _lab_family(rng, seed, font, image, pen, family)


CONFUSIONS = {"丙": "两", "板": "扳", "细": "纽", "红": "缸", "蛋": "蚤", "白": "自", "酶": "酵", "粒": "拉",
              "胆": "但", "素": "索", "肌": "肋", "转": "砖", "球": "珠", "径": "经", "围": "固"}
"""Characters a recogniser misreads as a look-alike (a few of the catalogue's confusion groups)."""


def truth_lines(page: ReportPage, skew_deg: float = 0.0, seed: int = 0, noise: float = 0.0) -> list:  # -> list[TextLine]
    """The page's text as a text detector and recogniser give it: pieces drawn on one baseline and close
    together are one line (half a character apart; with ``noise``, up to ``0.5 + noise`` characters, as a
    detector joins neighbouring cells), with each character's position; the whole page turned by
    ``skew_deg`` (residual skew after correction); confidence as drawn (lower for a stamp's text, a
    handwritten mark and faint thermal print). ``noise`` (0–1) also jitters boxes and character positions
    and misreads Chinese characters as look-alikes (:data:`CONFUSIONS`) at ``noise``/20 per character —
    never digits: a misread value is the recogniser's error, not one the structuring could mend."""
    from edge.reports.page import Box, TextLine

    rng = np.random.default_rng(seed)
    join_gap = 0.5 + noise
    pieces = sorted(page.drawn, key=lambda d: ((d.box[1] + d.box[3]) / 2, d.box[0]))
    groups: list[list[Drawn]] = []
    for d in pieces:
        for g in groups[-4:]:
            last = g[-1]
            same_line = abs((last.box[1] + last.box[3]) / 2 - (d.box[1] + d.box[3]) / 2) < 0.3 * d.size
            if same_line and 0 <= d.box[0] - last.box[2] < join_gap * d.size and last.conf == d.conf:
                g.append(d)
                break
        else:
            groups.append([d])
    a = np.deg2rad(skew_deg)
    cx0, cy0 = PAGE_SIZE[0] / 2, PAGE_SIZE[1] / 2
    faint = 0.85 if page.layout == "thermal" else 1.0
    out = []
    for g in groups:
        g.sort(key=lambda d: d.box[0])
        text, xs = "", []
        for k, d in enumerate(g):
            if k:
                text += " "
                xs.append((g[k - 1].box[2] + d.box[0]) / 2)
            text += d.text
            xs.extend(d.xs)
        x0, y0 = min(d.box[0] for d in g), min(d.box[1] for d in g)
        x1, y1 = max(d.box[2] for d in g), max(d.box[3] for d in g)
        pad = 0.15 * (y1 - y0)
        cy = (y0 + y1) / 2
        dy = (x0 + x1) / 2 - cx0
        shift = np.sin(a) * dy + (np.cos(a) - 1) * (cy - cy0)
        box = Box(int(x0 - pad), int(y0 - pad + shift), int(x1 - x0 + 2 * pad), int(y1 - y0 + 2 * pad))
        conf = float(np.clip(g[0].conf * faint - abs(rng.normal(0, 0.02 + 0.1 * noise)), 0.0, 1.0))
        if noise:
            h = box.h
            box = Box(int(box.x + rng.normal(0, 0.1 * noise * h)), int(box.y + rng.normal(0, 0.1 * noise * h)),
                      box.w, box.h)
            xs = [x + rng.normal(0, 0.08 * noise * h) for x in xs]
            text = "".join(CONFUSIONS[ch] if ch in CONFUSIONS and rng.random() < noise / 20 else ch for ch in text)
        out.append(TextLine(text, conf, box, char_x=tuple(float(x) for x in xs)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]
