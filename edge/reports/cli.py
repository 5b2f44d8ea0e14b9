"""``ehc-edge ocr IMAGE...``: read photographed medical reports and print one JSON object per image.

Each line holds the file, the structured report (kind, items with code, name, value, unit, ref and flag,
missing items, checks, risk with colour and rules) and the reading's notes and times. The patient block
(name, ID numbers …) is left out unless ``--personal`` is given. An image that cannot be read gives
``{"file": ..., "error": reason, "instruction": what to do}``; the exit status is then 1 (2 when the
Tesseract models are missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ehc-edge ocr", description="Read photos of medical reports and print one "
                                "JSON object per image (items, missing, risk).")
    p.add_argument("images", nargs="+", help="photos of reports, or folders of them")
    p.add_argument("--patient-age", type=int, help="age in years (when the report does not print it)")
    p.add_argument("--gestational-weeks", type=float, help="weeks of pregnancy")
    p.add_argument("--bp", help='blood pressure, "135/88"')
    p.add_argument("--height-cm", type=float)
    p.add_argument("--weight-kg", type=float)
    p.add_argument("--twin", action="store_true", help="more than one fetus")
    p.add_argument("--personal", action="store_true", help="include the patient block read from the report")
    p.add_argument("--page-text", action="store_true", help="include the raw reading (lines and table cells)")
    p.add_argument("--tessdata", help="folder holding chi_sim and eng (default: $TESSDATA_PREFIX, then Debian's)")
    p.add_argument("--one-report", action="store_true",
                   help="the images are the pages of one report: print one JSON object for all of them")
    p.add_argument("--engine", choices=("auto", "ppocr", "tesseract"), default="auto",
                   help="auto: PP-OCR text lines when installed, Tesseract otherwise")
    return p


def _patient(args: argparse.Namespace) -> dict[str, Any]:
    given = {"age": args.patient_age, "gestational_weeks": args.gestational_weeks, "bp": args.bp,
             "height_cm": args.height_cm, "weight_kg": args.weight_kg, "twin": args.twin or None}
    return {k: v for k, v in given.items() if v is not None}


def page_text_json(page: Any) -> dict[str, Any]:
    """A :class:`~edge.reports.page.PageText` as JSON (text, confidence and box of lines and cells)."""
    def box(b: Any) -> list[int]:
        return [b.x, b.y, b.w, b.h]

    def row(r: Any) -> list[dict[str, Any]]:
        return [{"col": c.col, "text": c.text, "conf": round(c.conf, 1), "box": box(c.box)} for c in r.cells]

    return {"width": page.width, "height": page.height, "notes": list(page.notes),
            "lines": [{"text": ln.text, "conf": round(ln.conf, 1), "box": box(ln.box)} for ln in page.lines],
            "tables": [{"header": row(t.header) if t.header else None, "rows": [row(r) for r in t.rows]}
                       for t in page.tables]}


def _files(names: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(path)
    return out


def ocr_main(argv: list[str] | None = None) -> int:
    """Run ``ehc-edge ocr`` with ``argv`` (the arguments after ``ocr``); returns the exit status."""
    from drivers.camera import CameraError, load_image
    from edge.reports.capture import CaptureRejected
    from edge.reports.ocr import OcrModelError
    from edge.reports.reader import ReportReader
    from edge.reports.structure import structure, structure_pages

    args = _parser().parse_args(argv)
    patient = _patient(args)
    try:
        reader = ReportReader(args.tessdata, engine=args.engine)
    except (OcrModelError, ImportError, RuntimeError) as exc:
        print(json.dumps({"error": "ocr_model_missing", "detail": str(exc)}, ensure_ascii=False), flush=True)
        return 2
    failed = 0
    pages: list[Any] = []
    files: list[str] = []
    with reader:
        for file in _files(args.images):
            started = time.perf_counter()
            try:
                frame = load_image(file)
                read = reader.read(frame)
            except CameraError as exc:
                failed += 1
                print(json.dumps({"file": str(file), "error": "unreadable_image", "detail": str(exc),
                                  "instruction": "请提供报告的照片文件 / Give a photo file of the report."},
                                 ensure_ascii=False), flush=True)
                continue
            except CaptureRejected as exc:
                failed += 1
                print(json.dumps({"file": str(file), "error": exc.reason, "detail": exc.detail,
                                  "instruction": exc.instruction}, ensure_ascii=False), flush=True)
                continue
            if args.one_report:
                pages.append(read.text)
                files.append(str(file))
                continue
            report = structure(read.text, patient=patient)
            out: dict[str, Any] = {"file": str(file)}
            out.update(report.to_json(personal=args.personal))
            out["reading"] = {"engine": read.timings.engine, "notes": list(read.text.notes),
                              "to_check": sum(1 for i in report.items if i.review),
                              "skew": round(read.captured.skew, 2),
                              "sharpness": round(read.captured.sharpness, 3),
                              "ms": round((time.perf_counter() - started) * 1000, 1)}
            if args.page_text:
                out["page_text"] = page_text_json(read.text)
            print(json.dumps(out, ensure_ascii=False), flush=True)
        if args.one_report and pages:
            report = structure_pages(pages, patient=patient)
            out = {"files": files}
            out.update(report.to_json(personal=args.personal))
            out["reading"] = {"pages": len(pages), "to_check": sum(1 for i in report.items if i.review)}
            print(json.dumps(out, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(ocr_main())
