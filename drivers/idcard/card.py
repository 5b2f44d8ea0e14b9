"""The card's 256-byte text block ↔ a typed :class:`IdCard`, for all four card layouts. Pure, no I/O.

The text block is UCS-2 little-endian, every field padded with spaces (``20 00``) to a fixed size. A
type flag at bytes 248–249 selects the layout (offsets in bytes, sizes in bytes; a character is 2 bytes):

Resident identity card (居民身份证), type flag blank::

    0   name 30            30  sex 2              32  nation code 4        36  birth date 16 (YYYYMMDD)
    52  address 70         122 ID number 36       158 issuing authority 30
    188 valid from 16      204 valid to 16 ("长期" = no expiry)             220 reserved 36

Hong Kong / Macau / Taiwan residence permit (港澳台居民居住证), type flag ``J``: the resident layout, the
nation field reserved (blank), then::

    220 pass number 18 (港澳台居民来往内地通行证号码)   238 issue count 4   242 reserved 6
    248 type "J"           250 reserved 6

Foreigner's permanent residence card, 2017 layout (外国人永久居留身份证 2017 版), type flag ``I``::

    0   English name 120   120 sex 2              122 card number 30 (15 chars)   152 nationality 6 (ISO alpha-3)
    158 Chinese name 30    188 valid from 16      204 valid to 16          220 birth date 16
    236 card version 4     240 authority code 8 (当次申请受理机关代码)     248 type "I"   250 reserved 6

Foreigner's permanent residence card, 2023 layout (GA 450-2023), type flag ``Y``::

    0   Chinese name 30    30  sex 2              32  renewal count 4 (换证次数)   36 birth date 16
    52  English name 70 (characters 1-35)         122 card number 36 (18 chars)   158 reserved 30
    188 valid from 16      204 valid to 16        220 English name 22 (characters 36-46)
    242 nationality 6      248 type "Y"           250 link to the previous (15-char) card number 6

(The 2017 foreigner layout also carries a birth date, between *valid to* and *version*; without it the
fields would not reach the type flag at 248.) Sex codes are GB/T 2261.1: 1 male, 2 female, 0 unknown,
9 not stated. Nation codes are GB 3304 (:data:`NATIONS`).

The photo is 1 024 bytes in the proprietary, encrypted WLT format that only licensed vendor libraries
decode. We keep it as an opaque blob: :func:`decode_photo` calls a registered :class:`PhotoDecoder`
plug-in, and there is none by default. Nothing here pretends to decode it.

:class:`IdCard` holds personal data: its ``repr`` masks every personal field, so it is safe in logs and
tracebacks; code must still never log its fields.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from drivers.idcard.codec import IdCardError, ProtocolError

logger = logging.getLogger(__name__)

TEXT_LEN = 256
WLT_PHOTO_LEN = 1024
TYPE_FLAG_AT = 248
PERMANENT = "长期"


class CardType(enum.Enum):
    """The four layouts of the text block, by type flag."""

    RESIDENT = "resident"
    FOREIGNER_2017 = "foreigner_2017"
    FOREIGNER_2023 = "foreigner_2023"
    HMT_RESIDENCE = "hmt_residence"

    @property
    def flag(self) -> str:
        """The type flag character stored at byte 248 (blank for the resident card)."""
        return _FLAGS[self]


_FLAGS = {CardType.RESIDENT: " ", CardType.FOREIGNER_2017: "I", CardType.FOREIGNER_2023: "Y",
          CardType.HMT_RESIDENCE: "J"}
_BY_FLAG = {v: k for k, v in _FLAGS.items() if v != " "}


class Sex(enum.Enum):
    """GB/T 2261.1 sex codes."""

    UNKNOWN = "0"
    MALE = "1"
    FEMALE = "2"
    NOT_STATED = "9"


NATIONS: dict[str, str] = {
    "01": "汉", "02": "蒙古", "03": "回", "04": "藏", "05": "维吾尔", "06": "苗", "07": "彝", "08": "壮",
    "09": "布依", "10": "朝鲜", "11": "满", "12": "侗", "13": "瑶", "14": "白", "15": "土家", "16": "哈尼",
    "17": "哈萨克", "18": "傣", "19": "黎", "20": "傈僳", "21": "佤", "22": "畲", "23": "高山", "24": "拉祜",
    "25": "水", "26": "东乡", "27": "纳西", "28": "景颇", "29": "柯尔克孜", "30": "土", "31": "达斡尔",
    "32": "仫佬", "33": "羌", "34": "布朗", "35": "撒拉", "36": "毛南", "37": "仡佬", "38": "锡伯", "39": "阿昌",
    "40": "普米", "41": "塔吉克", "42": "怒", "43": "乌孜别克", "44": "俄罗斯", "45": "鄂温克", "46": "德昂",
    "47": "保安", "48": "裕固", "49": "京", "50": "塔塔尔", "51": "独龙", "52": "鄂伦春", "53": "赫哲",
    "54": "门巴", "55": "珞巴", "56": "基诺", "97": "其他", "98": "外国血统中国籍人士",
}
"""GB 3304 nation codes: the 56 ethnic groups, plus 97 (other) and 98 (naturalised, foreign origin)."""


class CardFormatError(ProtocolError):
    """The text block does not have the expected size."""


class PhotoDecoderUnavailable(IdCardError):
    """No licensed WLT decoder plug-in is registered; the photo can only be stored and forwarded."""


@dataclass(frozen=True)
class IdCard:
    """One card as read, for all four layouts; fields a layout does not have are empty.

    ``name`` is the Chinese name (may be empty on a 2017 foreigner card), ``english_name`` the name on
    foreigner cards. ``valid_to`` is ``None`` and ``permanent`` true for "长期". ``photo`` is the raw WLT
    blob (opaque), ``fingerprint`` the raw fingerprint data when it was read (else empty).

    The repr masks all personal data:

    >>> IdCard(CardType.RESIDENT, id_number="11010519491231002X", name="张三")
    IdCard(resident, id_number=<18 chars>, name=<2 chars>, photo=<0 B>)
    """

    card_type: CardType
    name: str = field(default="", repr=False)
    english_name: str = field(default="", repr=False)
    sex: Sex = field(default=Sex.UNKNOWN, repr=False)
    nation_code: str = field(default="", repr=False)
    birth_date: dt.date | None = field(default=None, repr=False)
    address: str = field(default="", repr=False)
    id_number: str = field(default="", repr=False)
    authority: str = field(default="", repr=False)
    valid_from: dt.date | None = field(default=None, repr=False)
    valid_to: dt.date | None = field(default=None, repr=False)
    permanent: bool = field(default=False, repr=False)
    pass_number: str = field(default="", repr=False)
    issue_count: str = field(default="", repr=False)
    nationality: str = field(default="", repr=False)
    card_version: str = field(default="", repr=False)
    renewal_count: str = field(default="", repr=False)
    previous_number_link: str = field(default="", repr=False)
    photo: bytes = field(default=b"", repr=False)
    fingerprint: bytes = field(default=b"", repr=False)

    @property
    def nation(self) -> str:
        """Name of the nation (民族) for ``nation_code``; empty when the card has none or it is unknown."""
        return NATIONS.get(self.nation_code, "")

    @property
    def display_name(self) -> str:
        """The Chinese name, or the English name when the card has no Chinese name."""
        return self.name or self.english_name

    @property
    def photo_sha256(self) -> str:
        """SHA-256 of the WLT photo blob (hex); a reference that is not the photo."""
        return hashlib.sha256(self.photo).hexdigest()

    def expired(self, today: dt.date | None = None) -> bool:
        """True when ``valid_to`` is before ``today`` (never for "长期")."""
        if self.permanent or self.valid_to is None:
            return False
        return self.valid_to < (today or dt.date.today())

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values; the photo and fingerprint as length and SHA-256 only.

        This is personal data: for the operator's screen or the signed check-in record, never for logs.
        """
        d: dict[str, Any] = {
            "card_type": self.card_type.value, "name": self.name, "english_name": self.english_name,
            "sex": self.sex.name.lower(), "nation_code": self.nation_code, "nation": self.nation,
            "birth_date": _iso(self.birth_date), "address": self.address, "id_number": self.id_number,
            "authority": self.authority, "valid_from": _iso(self.valid_from),
            "valid_to": PERMANENT if self.permanent else _iso(self.valid_to), "permanent": self.permanent,
            "pass_number": self.pass_number, "issue_count": self.issue_count, "nationality": self.nationality,
            "card_version": self.card_version, "renewal_count": self.renewal_count,
            "previous_number_link": self.previous_number_link,
            "photo": {"format": "wlt", "length": len(self.photo), "sha256": self.photo_sha256},
            "fingerprint": {"length": len(self.fingerprint),
                            "sha256": hashlib.sha256(self.fingerprint).hexdigest() if self.fingerprint else None},
        }
        return d

    def __repr__(self) -> str:
        parts = [self.card_type.value, f"id_number=<{len(self.id_number)} chars>"]
        if self.name:
            parts.append(f"name=<{len(self.name)} chars>")
        if self.english_name:
            parts.append(f"english_name=<{len(self.english_name)} chars>")
        parts.append(f"photo=<{len(self.photo)} B>")
        if self.fingerprint:
            parts.append(f"fingerprint=<{len(self.fingerprint)} B>")
        return f"IdCard({', '.join(parts)})"

    __str__ = __repr__


def _iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


# --- decoding --------------------------------------------------------------------------------------------


def _text(block: bytes, start: int, size: int) -> str:
    return block[start:start + size].decode("utf-16-le", errors="replace").rstrip(" \x00").lstrip(" \x00")


def parse_date(text: str) -> dt.date | None:
    """``YYYYMMDD`` → date; ``None`` when blank or not a real calendar date."""
    if len(text) != 8 or not text.isdigit() or not text.isascii():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _sex(code: str) -> Sex:
    try:
        return Sex(code)
    except ValueError:
        return Sex.UNKNOWN


def card_type_of(block: bytes) -> CardType:
    """The layout of a text block, from its type flag (anything unknown is read as a resident card)."""
    flag = block[TYPE_FLAG_AT:TYPE_FLAG_AT + 2].decode("utf-16-le", errors="replace")
    return _BY_FLAG.get(flag, CardType.RESIDENT)


def parse_card(text: bytes, photo: bytes = b"", fingerprint: bytes = b"") -> IdCard:
    """Parse a 256-byte text block (any of the four layouts) and attach the opaque photo and fingerprint.

    Raises :class:`CardFormatError` when the block is not 256 bytes. Unreadable dates become ``None``
    (validation then says so); unknown sex codes become :attr:`Sex.UNKNOWN`.
    """
    if len(text) != TEXT_LEN:
        raise CardFormatError(f"text block has {len(text)} bytes, expected {TEXT_LEN}")
    kind = card_type_of(text)
    if kind is CardType.FOREIGNER_2017:
        valid_to = _text(text, 204, 16)
        return IdCard(kind, english_name=_text(text, 0, 120), sex=_sex(_text(text, 120, 2)),
                      id_number=_text(text, 122, 30), nationality=_text(text, 152, 6), name=_text(text, 158, 30),
                      valid_from=parse_date(_text(text, 188, 16)), valid_to=parse_date(valid_to),
                      permanent=valid_to == PERMANENT, birth_date=parse_date(_text(text, 220, 16)),
                      card_version=_text(text, 236, 4), authority=_text(text, 240, 8), photo=photo,
                      fingerprint=fingerprint)
    if kind is CardType.FOREIGNER_2023:
        head = text[52:122].decode("utf-16-le", errors="replace")
        tail = _text(text, 220, 22)
        english = (head + tail if tail else head).rstrip(" \x00").lstrip(" \x00")
        valid_to = _text(text, 204, 16)
        return IdCard(kind, name=_text(text, 0, 30), sex=_sex(_text(text, 30, 2)),
                      renewal_count=_text(text, 32, 4), birth_date=parse_date(_text(text, 36, 16)),
                      english_name=english, id_number=_text(text, 122, 36),
                      valid_from=parse_date(_text(text, 188, 16)), valid_to=parse_date(valid_to),
                      permanent=valid_to == PERMANENT, nationality=_text(text, 242, 6),
                      previous_number_link=_text(text, 250, 6), photo=photo, fingerprint=fingerprint)
    valid_to = _text(text, 204, 16)
    common: dict[str, Any] = dict(
        name=_text(text, 0, 30), sex=_sex(_text(text, 30, 2)), birth_date=parse_date(_text(text, 36, 16)),
        address=_text(text, 52, 70), id_number=_text(text, 122, 36), authority=_text(text, 158, 30),
        valid_from=parse_date(_text(text, 188, 16)), valid_to=parse_date(valid_to),
        permanent=valid_to == PERMANENT, photo=photo, fingerprint=fingerprint)
    if kind is CardType.HMT_RESIDENCE:
        return IdCard(kind, pass_number=_text(text, 220, 18), issue_count=_text(text, 238, 4), **common)
    return IdCard(kind, nation_code=_text(text, 32, 4), **common)


# --- encoding (simulator, tests) -------------------------------------------------------------------------


def _put(block: bytearray, start: int, size: int, value: str) -> None:
    raw = value.encode("utf-16-le")
    if len(raw) > size:
        raise ValueError(f"field at byte {start} holds {size // 2} characters, got {len(value)}")
    block[start:start + size] = raw + " ".encode("utf-16-le") * ((size - len(raw)) // 2)


def _date(d: dt.date | None) -> str:
    return d.strftime("%Y%m%d") if d else ""


def encode_text_block(card: IdCard) -> bytes:
    """The 256-byte text block for ``card`` (inverse of :func:`parse_card`; for the simulator and tests)."""
    b = bytearray(" ".encode("utf-16-le") * (TEXT_LEN // 2))
    valid_to = PERMANENT if card.permanent else _date(card.valid_to)
    t = card.card_type
    if t is CardType.FOREIGNER_2017:
        for at, size, value in ((0, 120, card.english_name), (120, 2, card.sex.value), (122, 30, card.id_number),
                                (152, 6, card.nationality), (158, 30, card.name), (188, 16, _date(card.valid_from)),
                                (204, 16, valid_to), (220, 16, _date(card.birth_date)), (236, 4, card.card_version),
                                (240, 8, card.authority)):
            _put(b, at, size, value)
    elif t is CardType.FOREIGNER_2023:
        english = card.english_name
        for at, size, value in ((0, 30, card.name), (30, 2, card.sex.value), (32, 4, card.renewal_count),
                                (36, 16, _date(card.birth_date)), (52, 70, english[:35]), (122, 36, card.id_number),
                                (188, 16, _date(card.valid_from)), (204, 16, valid_to), (220, 22, english[35:]),
                                (242, 6, card.nationality), (250, 6, card.previous_number_link)):
            _put(b, at, size, value)
    else:
        for at, size, value in ((0, 30, card.name), (30, 2, card.sex.value), (52, 70, card.address),
                                (36, 16, _date(card.birth_date)), (122, 36, card.id_number),
                                (158, 30, card.authority), (188, 16, _date(card.valid_from)), (204, 16, valid_to)):
            _put(b, at, size, value)
        if t is CardType.HMT_RESIDENCE:
            _put(b, 220, 18, card.pass_number)
            _put(b, 238, 4, card.issue_count)
        else:
            _put(b, 32, 4, card.nation_code)
    _put(b, TYPE_FLAG_AT, 2, t.flag)
    return bytes(b)


# --- photo plug-in ---------------------------------------------------------------------------------------


@runtime_checkable
class PhotoDecoder(Protocol):
    """A licensed WLT decoder (vendor library wrapper). Register one with :func:`set_photo_decoder`.

    >>> class VendorWlt:                                 # doctest: +SKIP
    ...     name = "vendor-wltrs"
    ...     def decode(self, wlt: bytes) -> bytes:       # returns an image file (BMP/JPEG/PNG bytes)
    ...         return vendor_lib.decode(wlt)
    >>> set_photo_decoder(VendorWlt())                   # doctest: +SKIP
    """

    name: str

    def decode(self, wlt: bytes) -> bytes:
        """Turn the 1 024-byte WLT blob into an image file; raise on failure."""
        ...


_photo_decoder: PhotoDecoder | None = None


def set_photo_decoder(decoder: PhotoDecoder | None) -> None:
    """Register (or, with ``None``, remove) the WLT decoder plug-in."""
    global _photo_decoder
    _photo_decoder = decoder
    if decoder is not None:
        logger.info("WLT photo decoder registered: %s", decoder.name)


def photo_decoder() -> PhotoDecoder | None:
    """The registered WLT decoder, or ``None`` (the default: photos are stored and forwarded only)."""
    return _photo_decoder


def decode_photo(wlt: bytes) -> bytes:
    """Decode a WLT photo with the registered plug-in; :class:`PhotoDecoderUnavailable` when there is none."""
    if _photo_decoder is None:
        raise PhotoDecoderUnavailable("no licensed WLT decoder is registered; the photo is kept as an opaque blob")
    return _photo_decoder.decode(wlt)
