"""Ticket templates and layout: one pure :func:`render` from (template, fields, paper) to styled lines.

Templates are data, one TOML file per kind in ``drivers/tickets/`` (``queue.toml``, ``pool.toml`` …)::

    kind = "queue"
    fields = ["clinic", "number", "time", "outcome"]   # must be given
    optional = ["note"]                                # may be missing or empty

    [[line]]
    text = "{clinic}"
    align = "center"
    bold = true

    [[line]]
    text = "{number}"
    size = 2
    align = "center"

A line has ``text`` with ``{field}`` placeholders (a format spec such as ``{count:>3}`` is allowed, attribute
or index access is not), and optionally ``right`` (a second column pushed to the right edge), ``bold``,
``size`` (1 or 2: double width and height), ``align`` (``left``, ``center``, ``right``), ``when`` (print only
if that field is non-empty), ``each`` (repeat the line for every item of a list field; the items' keys are
declared under ``[lists.NAME]``), ``rule`` (one character repeated across the paper) or ``qr`` (print the
named field as a QR code, ``qr_size`` dots per module). ``cut = false`` at the top level keeps the paper
uncut.

Widths are counted in font-A columns: 32 on 58 mm paper, 48 on 80 mm. ASCII takes one column; everything
else is sent in the printer's Chinese mode (GB18030) and printed from its 24-dot Chinese font, which takes
two columns: East Asian Wide and Fullwidth characters, and also ambiguous ones such as ``°`` or ``é``.
Field values are cleaned of control characters, so a value can never smuggle an ESC/POS command.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import string
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from foundation.configbase import StrictModel, format_validation_error

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "tickets"
PAPER_COLUMNS: dict[str, int] = {"58mm": 32, "80mm": 48}
KINDS = ("queue", "pool", "rack", "selftest", "registration", "report", "report_summary", "vaccination",
         "face_guidance", "face_check")
"""The ticket kinds the box prints; each has a template file in :data:`TEMPLATE_DIR`."""

Align = Literal["left", "center", "right"]
Paper = Literal["58mm", "80mm"]
KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
QR_MAX_BYTES = 7089  # largest numeric payload of a version 40 symbol; printers refuse longer data


class TicketError(ValueError):
    """A ticket cannot be laid out: unknown kind, invalid template or unusable fields."""


class UnknownTicketKind(TicketError):
    """No template exists for the requested ticket kind."""


class TemplateError(TicketError):
    """A template file is missing, not valid TOML, or breaks a template rule; the message names the file."""


class TicketFieldError(TicketError):
    """The fields given for a ticket are missing, of the wrong shape or too large."""


class LineSpec(StrictModel):
    """One line of a template (see the module docstring)."""

    text: str = ""
    right: str | None = None
    bold: bool = False
    size: Literal[1, 2] = 1
    align: Align = "left"
    when: str | None = None
    each: str | None = None
    rule: str | None = Field(None, min_length=1, max_length=1)
    qr: str | None = None
    qr_size: int = Field(6, ge=1, le=16)

    @model_validator(mode="after")
    def _one_kind(self) -> LineSpec:
        if self.qr is not None and (self.text or self.right or self.rule or self.each):
            raise ValueError("a qr line has no text, right, rule or each")
        if self.rule is not None and (self.text or self.right):
            raise ValueError("a rule line has no text or right")
        return self


class ListSpec(StrictModel):
    """The keys of the items of a list field."""

    fields: list[str] = []
    optional: list[str] = []


class TicketTemplate(StrictModel):
    """A parsed, checked template file."""

    kind: str
    description: str = ""
    fields: list[str]
    optional: list[str] = []
    lists: dict[str, ListSpec] = {}
    line: list[LineSpec] = Field(min_length=1)
    cut: bool = True

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if not KIND_RE.match(v):
            raise ValueError("kind must be lower-case letters, digits and _")
        return v

    @model_validator(mode="after")
    def _references(self) -> TicketTemplate:
        declared = set(self.fields) | set(self.optional)
        for name in self.lists:
            if name not in declared:
                raise ValueError(f"lists.{name}: not a declared field")
        for i, line in enumerate(self.line, 1):
            scope = set(declared)
            if line.each is not None:
                if line.each not in self.lists:
                    raise ValueError(f"line {i}: each = {line.each!r} needs a [lists.{line.each}] table")
                spec = self.lists[line.each]
                scope |= set(spec.fields) | set(spec.optional) | {"item"}
            for ref in (line.when, line.qr):
                if ref is not None and ref not in declared:
                    raise ValueError(f"line {i}: {ref!r} is not a declared field")
            for part in (line.text, line.right or ""):
                try:
                    names = placeholders(part)
                except ValueError as exc:
                    raise ValueError(f"line {i}: {exc}") from None
                for name in names:
                    if name not in scope:
                        raise ValueError(f"line {i}: placeholder {{{name}}} is not a declared field")
        return self


@dataclass(frozen=True, slots=True)
class StyledLine:
    """One printed line: text with its style, a QR code (``qr`` is the payload) or the final cut."""

    text: str = ""
    bold: bool = False
    size: int = 1
    align: Align = "left"
    qr: str | None = None
    qr_size: int = 6
    cut: bool = False


def placeholders(text: str) -> list[str]:
    """The field names used in ``text``; raises :class:`ValueError` on a malformed or unsafe placeholder."""
    names = []
    for _, name, _, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or conversion:
            raise ValueError(f"placeholder {{{name}}} must be a plain field name")
        names.append(name)
    return names


def columns(paper: str | int) -> int:
    """Font-A columns of ``paper`` (``"58mm"`` → 32, ``"80mm"`` → 48) or an explicit column count."""
    if isinstance(paper, int):
        if paper < 8:
            raise TicketError(f"paper width of {paper} columns is too narrow")
        return paper
    try:
        return PAPER_COLUMNS[paper]
    except KeyError:
        raise TicketError(f"unknown paper {paper!r} (use {' or '.join(PAPER_COLUMNS)})") from None


def char_width(ch: str) -> int:
    """Printed columns of one character: 1 for ASCII, 0 for combining marks, 2 for everything else."""
    if ch < "\x80":
        return 1
    if unicodedata.combining(ch):
        return 0
    # East Asian Wide/Fullwidth characters are two columns everywhere; the other non-ASCII characters
    # (ambiguous ones such as ° or é, narrow symbols) are printed from the printer's GB18030 font as well,
    # whose glyphs are full 24-dot cells.
    return 2


def display_width(text: str) -> int:
    """Printed columns of ``text`` (see :func:`char_width`)."""
    return sum(char_width(c) for c in text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufff9-\ufffb]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean(value: Any) -> str:
    """A field value as printable text: control characters become spaces, ``None`` becomes ``""``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dt.datetime):
        text = value.strftime("%Y-%m-%d %H:%M")
    elif isinstance(value, dt.time):
        text = value.strftime("%H:%M")
    elif isinstance(value, dt.date):
        text = value.isoformat()
    else:
        text = str(value)
    text = unicodedata.normalize("NFC", text)
    return _SURROGATE.sub("?", _CONTROL.sub(" ", text))


def _is_breakable(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _tokens(text: str) -> list[str]:
    """Split into spaces, single wide characters (a line may break after any of them) and words."""
    out: list[str] = []
    word = ""
    for ch in text:
        if ch == " " or _is_breakable(ch):
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        else:
            word += ch
    if word:
        out.append(word)
    return out


def _split_hard(word: str, width: int) -> list[str]:
    parts, cur, cur_w = [], "", 0
    for ch in word:
        w = char_width(ch)
        if cur and cur_w + w > width:
            parts.append(cur)
            cur, cur_w = "", 0
        cur += ch
        cur_w += w
    if cur:
        parts.append(cur)
    return parts


def wrap(text: str, width: int) -> list[str]:
    """Break ``text`` into lines of at most ``width`` columns.

    Latin words stay whole unless longer than a line; Chinese text may break between any two characters.
    ``\\n`` starts a new line; spaces at a break are dropped, leading spaces of a paragraph are kept.

    >>> wrap("体检报告 Health report 2025", 12)
    ['体检报告', 'Health', 'report 2025']
    """
    if width < 1:
        raise TicketError("cannot wrap to less than one column")
    lines: list[str] = []
    for para in text.split("\n"):
        cur, cur_w = "", 0
        for tok in _tokens(para):
            w = display_width(tok)
            if tok == " ":
                if cur_w + 1 <= width:
                    cur, cur_w = cur + " ", cur_w + 1
                continue
            if cur_w + w <= width:
                cur, cur_w = cur + tok, cur_w + w
                continue
            if cur.strip():
                lines.append(cur.rstrip())
            cur, cur_w = "", 0
            for part in _split_hard(tok, width) if w > width else [tok]:
                if cur:
                    lines.append(cur)
                cur, cur_w = part, display_width(part)
        lines.append(cur.rstrip())
    return lines


def _columns_line(left: str, right: str, width: int) -> list[str]:
    right = re.sub(" {2,}", " ", right.strip())  # "{value} {unit} {flag}" with an empty unit
    left = left.rstrip()
    lw, rw = display_width(left), display_width(right)
    if lw + 1 + rw <= width:
        return [left + " " * (width - lw - rw) + right]
    out = wrap(left, width) if left else []
    for r in wrap(right, width):
        out.append(" " * (width - display_width(r)) + r)
    return out


def _as_item(value: Any) -> Mapping[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return value
    return {"item": value}


def _format(text: str, values: Mapping[str, Any], where: str) -> str:
    try:
        return text.format_map(values)
    except (ValueError, TypeError) as exc:
        raise TicketFieldError(f"{where}: {exc}") from None


def _scalars(template: TicketTemplate, fields: Mapping[str, Any]) -> dict[str, Any]:
    missing = [f for f in template.fields if f not in fields or fields[f] is None]
    if missing:
        raise TicketFieldError(f"ticket {template.kind!r}: missing field(s) {', '.join(missing)}")
    known = set(template.fields) | set(template.optional)
    values: dict[str, Any] = {}
    for name in known:
        value = fields.get(name)
        if name in template.lists:
            if value is None:
                value = []
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise TicketFieldError(f"ticket {template.kind!r}: field {name!r} must be a list")
            values[name] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = value  # kept numeric so that a format spec such as {count:>3} works
        else:
            values[name] = clean(value)
    return values


def _item_values(template: TicketTemplate, list_name: str, item: Any, base: dict[str, Any],
                 index: int) -> dict[str, Any]:
    spec = template.lists[list_name]
    data = _as_item(item)
    missing = [f for f in spec.fields if data.get(f) is None]
    if missing:
        raise TicketFieldError(f"ticket {template.kind!r}: {list_name}[{index}] lacks {', '.join(missing)}")
    values = dict(base)
    for name in [*spec.fields, *spec.optional, "item"]:
        value = data.get(name)
        values[name] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else clean(value)
    return values


def render(template: TicketTemplate, fields: Mapping[str, Any], paper: str | int) -> list[StyledLine]:
    """Lay out one ticket: fill ``template`` with ``fields`` and wrap it for ``paper`` (``"58mm"``, ``"80mm"``
    or a column count). The result ends with a cut line unless the template says ``cut = false``.

    Raises :class:`TicketFieldError` when a required field is missing or a list field is not a list.
    """
    width = columns(paper)
    values = _scalars(template, fields)
    out: list[StyledLine] = []
    for i, spec in enumerate(template.line, 1):
        if spec.when is not None and not _present(values.get(spec.when)):
            continue
        if spec.qr is not None:
            raw = fields.get(spec.qr)  # QR data is length-prefixed, so it is sent exactly as given
            payload = "" if raw is None else str(raw)
            if not payload:
                raise TicketFieldError(f"ticket {template.kind!r}: QR field {spec.qr!r} is empty")
            if len(payload.encode("utf-8")) > QR_MAX_BYTES:
                raise TicketFieldError(f"ticket {template.kind!r}: QR field {spec.qr!r} is too long for a QR code")
            out.append(StyledLine(qr=payload, align=spec.align, qr_size=spec.qr_size))
            continue
        cols = width // spec.size
        if spec.each is not None:
            scopes = [_item_values(template, spec.each, item, values, n) for n, item in enumerate(values[spec.each])]
        else:
            scopes = [values]
        for scope in scopes:
            where = f"ticket {template.kind!r} line {i}"
            if spec.rule is not None:
                texts = [spec.rule * max(1, cols // max(1, char_width(spec.rule)))]
            elif spec.right is not None:
                texts = _columns_line(_format(spec.text, scope, where), _format(spec.right, scope, where), cols)
            else:
                texts = wrap(_format(spec.text, scope, where), cols)
            out.extend(StyledLine(text=t, bold=spec.bold, size=spec.size, align=spec.align) for t in texts)
    if template.cut:
        out.append(StyledLine(cut=True))
    return out


def _present(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Sequence):
        return len(value) > 0
    return value is not None


def parse_template(text: str, source: str = "template") -> TicketTemplate:
    """Parse and check template TOML; raises :class:`TemplateError` naming ``source`` and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{source}: not valid TOML: {exc}") from None
    try:
        return TicketTemplate.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(format_validation_error(source, exc)) from None


def load_template(kind: str, directory: Path | None = None) -> TicketTemplate:
    """The template for ``kind`` from ``directory`` (default :data:`TEMPLATE_DIR`).

    Raises :class:`UnknownTicketKind` when there is no such file and :class:`TemplateError` when it is bad.
    """
    directory = Path(directory) if directory is not None else TEMPLATE_DIR
    if not KIND_RE.match(kind or ""):
        raise UnknownTicketKind(f"{kind!r} is not a ticket kind name")
    path = directory / f"{kind}.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in directory.glob("*.toml"))) or "none"
        raise UnknownTicketKind(f"no ticket template {kind!r} in {directory} (known: {known})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read: {exc}") from None
    template = parse_template(text, str(path))
    if template.kind != kind:
        raise TemplateError(f"{path}: kind = {template.kind!r} does not match the file name")
    return template


def load_templates(directory: Path | None = None) -> dict[str, TicketTemplate]:
    """Every template in ``directory`` keyed by kind (default: the shipped ones); a bad file raises."""
    directory = Path(directory) if directory is not None else TEMPLATE_DIR
    return {p.stem: load_template(p.stem, directory) for p in sorted(directory.glob("*.toml"))}
