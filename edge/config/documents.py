"""``[mrz]`` in edge.toml: passports and foreign ID cards read under the camera (:mod:`edge.documents`)."""

from __future__ import annotations

from pydantic import Field

from foundation.configbase import StrictModel


class MrzSettings(StrictModel):
    """Camera MRZ reading: where the models are and how hard to look."""

    tessdata: str | None = Field(None, description="Folder holding mrz.traineddata (the box's model folder); "
                                                   "unset or without the file: Tesseract's eng with a "
                                                   "character whitelist (less accurate)")
    system_tessdata: str | None = Field(None, description="Folder holding eng.traineddata; default: "
                                                          "$TESSDATA_PREFIX, then Debian's "
                                                          "/usr/share/tesseract-ocr/5/tessdata")
    cache_dir: str | None = Field(None, description="Where a combined tessdata folder (mrz + eng links) is "
                                                    "made when the model folder has no eng; default: "
                                                    "$CACHE_DIRECTORY, else ~/.cache/ehc-edge")
    work_width: int = Field(640, ge=320, le=1600, description="Width the frame is reduced to for locating "
                                                               "the zone")
    max_candidates: int = Field(2, ge=1, le=5, description="Zone candidates read per frame before giving up")
