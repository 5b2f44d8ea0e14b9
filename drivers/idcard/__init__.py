"""Second-generation ID card readers (SAM module over serial): codec, card layouts, validation, reader loop.

Modules, one job each:

* :mod:`drivers.idcard.codec` — SAM frames ↔ typed values, statuses and their exceptions (pure).
* :mod:`drivers.idcard.card` — the 256-byte text block ↔ :class:`IdCard`, four layouts; WLT photo plug-in.
* :mod:`drivers.idcard.validate` — identity number checks → :class:`ValidationResult` (never raises).
* :mod:`drivers.idcard.reader` — :class:`IdCardReader` over pyserial: commands and the polling loop.
* :mod:`drivers.idcard.cli` — ``ehc-edge idcard read``.

Protocol, layouts and status handling: ``docs/idcard.md``.
"""

from drivers.idcard.card import CardType, IdCard, PhotoDecoder, Sex, decode_photo, parse_card, set_photo_decoder
from drivers.idcard.codec import (
                                  CardError,
                                  CardNotFound,
                                  ChecksumError,
                                  Command,
                                  FrameError,
                                  IdCardError,
                                  LinkStatusError,
                                  ReadFailed,
                                  Response,
                                  SamError,
                                  Status,
                                  StatusError,
)
from drivers.idcard.reader import IdCardReader, ReaderDisconnected, ReaderTimeout
from drivers.idcard.validate import ValidationResult, validate_card, validate_id_number

__all__ = ["CardError", "CardNotFound", "CardType", "ChecksumError", "Command", "FrameError", "IdCard", "IdCardError",
           "IdCardReader", "LinkStatusError", "PhotoDecoder", "ReadFailed", "ReaderDisconnected", "ReaderTimeout",
           "Response", "SamError", "Sex", "Status", "StatusError", "ValidationResult", "decode_photo", "parse_card",
           "set_photo_decoder", "validate_card", "validate_id_number"]
