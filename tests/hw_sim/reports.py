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

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import difflib
import re

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

class _Pen:
    """Draws text on the page with the report's fonts."""

    def __init__(self, image: Image.Image, font: str, size: int) -> None:
        self.draw = ImageDraw.Draw(image)
        self.font_name = font
        self.size = size
        self._cache: dict[int, ImageFont.FreeTypeFont] = {}

    def font(self, size: int | None = None) -> ImageFont.FreeTypeFont:
        size = size or self.size
        if size not in self._cache:
            self._cache[size] = _font(self.font_name, size)
        return self._cache[size]

    def text(self, xy: tuple[float, float], text: str, size: int | None = None, anchor: str = "la") -> None:
        self.draw.text(xy, text, fill=0, font=self.font(size), anchor=anchor)

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
    return ReportPage(seed, layout, font, panel, image, items, "lab", roles)


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
    return ReportPage(seed, "ultrasound", font, "ultrasound", image, items, "ultrasound", narrative=narrative)


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
