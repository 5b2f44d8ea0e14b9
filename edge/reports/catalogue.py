"""The item catalogue (``catalogue.toml``) and matching of printed item names against it.

A printed name is matched in three steps, each only when the earlier one found nothing:

1. exact: the name, an alias or an abbreviation, after normalisation (full-width → half-width, case,
   spaces, leading ``*``/numbering, a trailing ``(ALT)`` is tried on its own as well);
2. OCR classes: every character replaced by the representative of its confusion group (``丙``/``两``),
   then exact;
3. fuzzy: an edit distance in which a substitution inside a confusion group costs a quarter; accepted only
   above a similarity floor and clearly ahead of the next item.

At every step, more than one item means *ambiguous* and gives no match, unless the report kind picks out
exactly one of them (``TP`` is 总蛋白 in a biochemistry report, 梅毒螺旋体抗体 in an infection panel).

Example::

    cat = load_catalogue()
    m = cat.match("谷两转氨酶")          # OCR read 丙 as 两
    assert m and m.item.code == "1742-6" and m.method == "ocr"
"""

from __future__ import annotations

import logging
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

DEFAULT_CATALOGUE = "catalogue.toml"
ItemType = Literal["quantity", "qualitative", "text"]
ITEM_TYPES = ("quantity", "qualitative", "text")

LOCAL_CODE = re.compile(r"ehc:[a-z][a-z0-9-]*")
"""Items with no LOINC code we are sure of carry a local code (``ehc:placenta-grade``)."""
FUZZY_FLOOR = 0.75      # similarity below this is no match
FUZZY_MARGIN = 0.12     # the best item must lead the next one by this much
CONFUSION_COST = 0.25   # cost of substituting a character by one of its confusion group


class CatalogueError(ValueError):
    """The catalogue file is malformed (unknown key, bad LOINC check digit, duplicate code …)."""


@dataclass(frozen=True, slots=True)
class ItemDef:
    """One catalogue item: its code, names, canonical unit and typical ranges."""

    code: str
    name: str
    en: str
    abbr: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    type: ItemType = "quantity"
    unit: str = ""
    units: Mapping[str, float] = field(default_factory=dict)
    ref_low: float | None = None
    ref_high: float | None = None
    ref_text: str = ""
    plausible: tuple[float, float] | None = None
    kinds: tuple[str, ...] = ()
    category: str = "laboratory"
    positive_abnormal: bool = True
    loinc_note: str = ""


@dataclass(frozen=True, slots=True)
class ReportKind:
    """A kind of report: its names in titles and the items a complete one holds (alternatives per entry)."""

    key: str
    name: str
    titles: tuple[str, ...]
    category: str
    required: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Match:
    """A printed name resolved to an item: ``method`` is exact / ocr / fuzzy, ``score`` 0–1."""

    item: ItemDef
    score: float
    method: str
    key: str


def loinc_check_digit(number: str) -> int:
    """The LOINC Mod 10 check digit of the part before the hyphen."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return (10 - total % 10) % 10


def valid_loinc(code: str) -> bool:
    """True when ``code`` looks like ``NNNN-C`` with a correct check digit."""
    m = re.fullmatch(r"(\d{1,7})-(\d)", code)
    return bool(m) and loinc_check_digit(m.group(1)) == int(m.group(2))


_LEADING = re.compile(r"^[\s*★☆△▲#※·•\-]*(?:(?:No|NO|no)\.?\s*(?=\d))?(?:\d{1,3}[.、)）\s]+)?[\s*★☆△▲※]*")
_PARENS = re.compile(r"[(（\[【]([^)）\]】]*)[)）\]】]")
_SPACE = re.compile(r"[\s:：_]+")
_MIXED = re.compile(r"^(.*[\u4e00-\u9fff])([a-zμγ][a-z0-9%#/+\-]*)$")       # 血小板计数plt
_MIXED_REV = re.compile(r"^([a-zμγ][a-z0-9%#/+\-]*?)([\u4e00-\u9fff].*)$")   # plt血小板计数


_TRAILING = re.compile(r"[\s,、.。·…‥・;]+$")


def normalise(text: str) -> str:
    """Compare form of a printed name: NFKC, no spaces or colons, lower case, no leading marks or numbering,
    no trailing stops or commas (the first dots of a leader, ``y-谷氨酰转移酶,``)."""
    text = unicodedata.normalize("NFKC", text).replace("µ", "μ")
    text = _TRAILING.sub("", _LEADING.sub("", text))
    return _SPACE.sub("", text).lower()


def name_variants(text: str) -> list[str]:
    """The forms of a name cell worth looking up: whole, without the parenthesis, the parenthesis alone,
    and with a ``#`` / ``%`` / ``比率`` suffix spelt as the catalogue does (``单核细胞#`` → ``单核细胞绝对值``)."""
    whole = normalise(text)
    out = [whole] if whole else []
    inner = [normalise(g) for g in _PARENS.findall(unicodedata.normalize("NFKC", text))]
    outer = normalise(_PARENS.sub("", unicodedata.normalize("NFKC", text)))
    extra: list[str] = []
    nfkc = unicodedata.normalize("NFKC", text)
    open_tail = re.sub(r"[(（\[【][^)）\]】]*$", "", nfkc)          # 腹围(AGO  → 腹围
    if open_tail != nfkc:
        extra.append(normalise(open_tail))
    m = re.search(r"([A-Za-z][A-Za-z0-9%#/+\-]*)\s*[)）]\s*$", nfkc)
    if m and "(" not in nfkc and "（" not in nfkc:                  # ... EO%)  → eo%
        extra.append(normalise(m.group(1)))
    for v in (outer, whole):
        m = _MIXED.match(v) or _MIXED_REV.match(v)
        if m:
            extra.extend(m.groups())
    for v in (outer, whole):
        m = _SUFFIX.match(v)
        if m and _CJK_END.search(m.group(1)):
            extra.extend(m.group(1) + alt for alt in _SUFFIXES[m.group(2)])
    for v in (outer, whole):
        letters = _ZERO_IN_WORD.sub("o", v)  # e0% → eo%: a recogniser's 0 for the letter O
        if letters != v:
            extra.append(letters)
    for v in [outer, *inner, *extra]:
        if v and v not in out:
            out.append(v)
    return out


_SUFFIXES = {"#": ("绝对值", "计数"), "%": ("百分比",), "比率": ("百分比",), "百分率": ("百分比",), "比例": ("百分比",),
             "绝对值": ("计数",), "数": ("绝对值", "计数")}
_ZERO_IN_WORD = re.compile(r"(?<=[a-z])0(?![0-9.])|(?<![0-9.])0(?=[a-z])")
_SUFFIX = re.compile(r"^(.+?)(#|%|比率|百分率|比例|绝对值|数)$")
_CJK_END = re.compile(r"[\u4e00-\u9fff]$")


def _is_ascii(text: str) -> bool:
    return all(ord(c) < 128 or c in "μγ%#" for c in text)


@dataclass
class Catalogue:
    """Items and kinds, with the lookup tables built from them."""

    items: tuple[ItemDef, ...]
    kinds: Mapping[str, ReportKind]
    confusable: tuple[str, ...] = ()
    _exact: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _canon_keys: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _class: dict[str, str] = field(default_factory=dict, repr=False)
    _by_code: dict[str, ItemDef] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for group in self.confusable:
            rep = group[0].lower()
            for ch in group:
                self._class[ch.lower()] = rep
        for item in self.items:
            self._by_code[item.code] = item
            for key in (item.name, item.en, *item.aliases, *item.abbr):
                k = normalise(key)
                if k:
                    self._exact.setdefault(k, set()).add(item.code)
        for k, codes in self._exact.items():
            self._canon_keys.setdefault(self.canonical(k), set()).update(codes)

    def item(self, code: str) -> ItemDef:
        """The item with LOINC ``code``; raises KeyError."""
        return self._by_code[code]

    def get(self, code: str) -> ItemDef | None:
        return self._by_code.get(code)

    def canonical(self, text: str) -> str:
        """``text`` with every character replaced by its confusion group's representative."""
        return "".join(self._class.get(c, c) for c in text)

    def _resolve(self, codes: Iterable[str], kind: str | None) -> ItemDef | None | Literal[False]:
        """One item, None for nothing, False for ambiguous (after preferring items of ``kind``)."""
        codes = set(codes)
        if not codes:
            return None
        if len(codes) == 1:
            return self._by_code[next(iter(codes))]
        if kind:
            in_kind = [c for c in codes if kind in self._by_code[c].kinds]
            if len(in_kind) == 1:
                return self._by_code[in_kind[0]]
        return False

    def match(self, text: str, *, kind: str | None = None) -> Match | None:
        """The item a printed name stands for, or None when unknown or ambiguous."""
        return _match_cached(self, text, kind)

    def _match(self, text: str, kind: str | None) -> Match | None:
        variants = name_variants(text)
        if not variants:
            return None
        for v in variants:
            got = self._resolve(self._exact.get(v, ()), kind)
            if got is False:
                return None
            if got is not None:
                return Match(got, 1.0, "exact", v)
        for v in variants:
            got = self._resolve(self._canon_keys.get(self.canonical(v), ()), kind)
            if got is False:
                return None
            if got is not None:
                return Match(got, 0.95, "ocr", v)
        for v in variants:
            m = self._fuzzy(v, kind)
            if m is not None:
                return m
        return None

    def _fuzzy(self, text: str, kind: str | None) -> Match | None:
        if len(text) < 2 or _is_ascii(text):
            return None  # abbreviations are matched exactly only: "AST"/"ALT" are one letter apart
        best: dict[str, tuple[float, str]] = {}
        for key, codes in self._exact.items():
            if _is_ascii(key) or abs(len(key) - len(text)) > max(1, len(text) // 3):
                continue
            dist = self._distance(text, key)
            score = 1.0 - dist / max(len(text), len(key))
            only_confusions = dist < 1.0
            if score < FUZZY_FLOOR and not (only_confusions and len(key) >= 2):
                continue
            for code in codes:
                if code not in best or score > best[code][0]:
                    best[code] = (score, key)
        if not best:
            return None
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
        top_code, (top, key) = ranked[0]
        rivals = [(c, s) for c, (s, _) in ranked[1:] if top - s < FUZZY_MARGIN]
        if rivals:
            contenders = [top_code, *(c for c, _ in rivals)]
            got = self._resolve(contenders, kind)
            if not got:
                logger.debug("fuzzy name match ambiguous between %s", ", ".join(sorted(contenders)))
                return None
            return Match(got, round(best[got.code][0], 3), "fuzzy", best[got.code][1])
        return Match(self._by_code[top_code], round(top, 3), "fuzzy", key)

    def _distance(self, a: str, b: str) -> float:
        """Edit distance where a substitution within a confusion group costs :data:`CONFUSION_COST`."""
        prev = [float(j) for j in range(len(b) + 1)]
        for i, ca in enumerate(a, 1):
            cur = [float(i)] + [0.0] * len(b)
            ka = self._class.get(ca, ca)
            for j, cb in enumerate(b, 1):
                if ca == cb:
                    sub = 0.0
                elif ka == self._class.get(cb, cb):
                    sub = CONFUSION_COST
                else:
                    sub = 1.0
                cur[j] = min(prev[j] + 1.0, cur[j - 1] + 1.0, prev[j - 1] + sub)
            prev = cur
        return prev[-1]

    def find_kind(self, text: str) -> str | None:
        """The report kind named in a title line, or None (the longest title word wins)."""
        norm = normalise(text)
        best: tuple[int, str] | None = None
        for kind in self.kinds.values():
            for title in kind.titles:
                t = normalise(title)
                if t and t in norm and (best is None or len(t) > best[0]):
                    best = (len(t), kind.key)
        return best[1] if best else None

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=4096)
def _match_cached(cat: Catalogue, text: str, kind: str | None) -> Match | None:
    return cat._match(text, kind)


_ITEM_KEYS = {"code", "name", "en", "abbr", "aliases", "type", "unit", "units", "ref_low", "ref_high", "ref_text",
              "plausible", "kinds", "category", "positive_abnormal", "loinc_note"}
_KIND_KEYS = {"name", "titles", "category", "required"}


def _item(raw: Mapping[str, Any], where: str) -> ItemDef:
    unknown = set(raw) - _ITEM_KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("code", "name", "en"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise CatalogueError(f"{where}: {key} is required text")
    code = raw["code"]
    if not (valid_loinc(code) or LOCAL_CODE.fullmatch(code)):
        raise CatalogueError(f"{where}: {code!r} is not a LOINC code with a valid check digit")
    typ = raw.get("type", "quantity")
    if typ not in ITEM_TYPES:
        raise CatalogueError(f"{where}: type must be one of {', '.join(ITEM_TYPES)}")
    plausible = raw.get("plausible")
    if plausible is not None and (len(plausible) != 2 or plausible[0] > plausible[1]):
        raise CatalogueError(f"{where}: plausible must be [low, high]")
    units = raw.get("units", {})
    if not all(isinstance(v, (int, float)) and v > 0 for v in units.values()):
        raise CatalogueError(f"{where}: unit factors must be positive numbers")
    return ItemDef(code=code, name=raw["name"], en=raw["en"], abbr=tuple(raw.get("abbr", ())),
                   aliases=tuple(raw.get("aliases", ())), type=typ, unit=raw.get("unit", ""),
                   units={k: float(v) for k, v in units.items()},
                   ref_low=raw.get("ref_low"), ref_high=raw.get("ref_high"), ref_text=raw.get("ref_text", ""),
                   plausible=(float(plausible[0]), float(plausible[1])) if plausible else None,
                   kinds=tuple(raw.get("kinds", ())), category=raw.get("category", "laboratory"),
                   positive_abnormal=bool(raw.get("positive_abnormal", True)), loinc_note=raw.get("loinc_note", ""))


def parse_catalogue(data: Mapping[str, Any], source: str = "catalogue") -> Catalogue:
    """Build a :class:`Catalogue` from parsed TOML; raises :class:`CatalogueError` naming ``source``."""
    items: list[ItemDef] = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("item", []), 1):
        item = _item(raw, f"{source}: item {i}")
        if item.code in seen:
            raise CatalogueError(f"{source}: item {i}: duplicate code {item.code}")
        seen.add(item.code)
        items.append(item)
    kinds: dict[str, ReportKind] = {}
    for key, raw in data.get("kind", {}).items():
        unknown = set(raw) - _KIND_KEYS
        if unknown:
            raise CatalogueError(f"{source}: kind.{key}: unknown key(s) {', '.join(sorted(unknown))}")
        required = tuple(tuple(entry.split("|")) for entry in raw.get("required", []))
        for alt in required:
            for code in alt:
                if code not in seen:
                    raise CatalogueError(f"{source}: kind.{key}: required code {code} is not an item")
        kinds[key] = ReportKind(key, raw.get("name", key), tuple(raw.get("titles", ())),
                                raw.get("category", "laboratory"), required)
    for item in items:
        for k in item.kinds:
            if k not in kinds:
                raise CatalogueError(f"{source}: item {item.code}: unknown kind {k!r}")
    confusable = tuple(data.get("ocr", {}).get("confusable", ()))
    return Catalogue(tuple(items), kinds, confusable)


@lru_cache(maxsize=4)
def _load_default() -> Catalogue:
    text = resources.files(__package__).joinpath(DEFAULT_CATALOGUE).read_text(encoding="utf-8")
    return parse_catalogue(tomllib.loads(text), DEFAULT_CATALOGUE)


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The shipped catalogue, or the one at ``path``."""
    if path is None:
        return _load_default()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read: {exc}") from None
    return parse_catalogue(data, str(path))
