"""Build the PP-OCR text-line models of the box from the ONNX files in the ``rapidocr_onnxruntime`` wheel.

A build tool, not part of the box. It runs with the product venv's Python and does the work in a
separate build venv under /tmp (``onnx`` never enters the product venv)::

    .venv/bin/python -m models_tflite.convert_ppocr            # build venv, convert, check, install
    .venv/bin/python -m models_tflite.convert_ppocr --check    # only check the committed files' hashes
    .venv/bin/python -m models_tflite.convert_ppocr --variants /tmp/ppocr-variants   # for bench/ocr_runtime.py

Steps:

1. ``pip download rapidocr_onnxruntime==1.4.4 --no-deps`` (wheel SHA-256 checked) and take PaddleOCR's
   PP-OCRv4 mobile detection and recognition models and the mobile v2.0 angle classifier (Apache-2.0,
   exported to ONNX by the RapidOCR project; each member's SHA-256 checked). The recogniser's character
   dictionary (``ppocr_keys_v1``, 6623 characters) is in its metadata (``character``) and stays there.
2. paddle2onnx writes every weight as a ``Constant`` node; they become initializers (the same graph;
   quantisation tools only see initializers).
3. Quantisation, chosen per model by measurement (``bench/ocr_runtime.py``, docs/reports.md):
   * recogniser: dynamic range, int8 weights of its ``MatMul``/``Gemm`` layers (the SVTR mixer and the
     6625-class output layer; 10.8 → 7.8 MB), float activations; its convolutions stay float32;
   * detector and classifier: float32. Dynamic-range int8 of the convolutions (``ConvInteger``) made
     ONNX Runtime 1.32 four to five times slower on x86_64 and broke the output (no field of a page read
     right, per tensor or per channel, reduce-range or not; uint8 weights kept 70 %).
4. Check: every model loads in ONNX Runtime and gives finite output; the files are written here, and
   their SHA-256 printed for ``manifest.toml``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
WHEEL_SPEC = "rapidocr_onnxruntime==1.4.4"
WHEEL_NAME = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
BUILD_PACKAGES = ["onnx==1.23.2", "onnxruntime==1.32.0", "numpy==2.4.6"]
BUILD_VENV = Path(tempfile.gettempdir()) / "ehc-ppocr-build"

# output file → (wheel member, member SHA-256, quantised op types or () for float32)
MODELS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ppocr_det_v4_mobile.onnx": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                                 "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", ()),
    "ppocr_rec_v4_mobile_mmint8.onnx": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                                        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
                                        ("MatMul", "Gemm")),
    "ppocr_cls_v2_mobile.onnx": ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                                 "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", ()),
}

VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # what bench/ocr_runtime.py compares the chosen files with (not shipped)
    "ppocr_rec_v4_mobile_fp32.onnx": ("ppocr_rec_v4_mobile_mmint8.onnx", ()),
    "ppocr_rec_v4_mobile_int8.onnx": ("ppocr_rec_v4_mobile_mmint8.onnx", ("Conv", "MatMul", "Gemm")),
    "ppocr_det_v4_mobile_int8.onnx": ("ppocr_det_v4_mobile.onnx", ("Conv",)),
}
"""Variant file → (the shipped file whose source it shares, quantised op types)."""

CONVERT = textwrap.dedent("""
    import sys
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst, ops = sys.argv[1], sys.argv[2], [o for o in sys.argv[3].split(",") if o]
    m = onnx.load(src)
    g = m.graph
    keep = []
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    onnx.checker.check_model(m)
    if ops:
        tmp = dst + ".fp32"
        onnx.save(m, tmp)
        quantize_dynamic(tmp, dst, weight_type=QuantType.QInt8, op_types_to_quantize=ops)
    else:
        onnx.save(m, dst)
    s = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
    shape = {"ppocr_det": (1, 3, 320, 320), "ppocr_rec": (1, 3, 48, 320), "ppocr_cls": (1, 3, 48, 192)}
    x = np.random.default_rng(0).uniform(-1, 1, shape[dst.rsplit("/", 1)[-1][:9]]).astype(np.float32)
    out = s.run(None, {s.get_inputs()[0].name: x})[0]
    assert np.isfinite(out).all(), dst
    print(dst, out.shape)
""")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _build_python() -> Path:
    py = BUILD_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BUILD_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *BUILD_PACKAGES], check=True)
    return py


def _wheel(work: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), WHEEL_SPEC],
                   check=True)
    wheel = work / WHEEL_NAME
    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel.name}: SHA-256 {sha256(wheel)} differs from the pinned {WHEEL_SHA256}")
    return wheel


def convert(out_dir: Path = HERE, variants: bool = False) -> dict[str, str]:
    """Download, convert and write the three models into ``out_dir`` (with ``variants``: the
    :data:`VARIANTS` instead); their SHA-256 by file name."""
    py = _build_python()
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheel = _wheel(work)
        script = work / "convert.py"
        script.write_text(CONVERT, encoding="utf-8")
        jobs = {out: (MODELS[base][0], MODELS[base][1], ops) for out, (base, ops) in VARIANTS.items()} \
            if variants else MODELS
        with zipfile.ZipFile(wheel) as zf:
            for out, (member, member_sha, ops) in jobs.items():
                src = work / Path(member).name
                src.write_bytes(zf.read(member))
                if sha256(src) != member_sha:
                    raise SystemExit(f"{member}: SHA-256 {sha256(src)} differs from the pinned {member_sha}")
                dst = work / out
                subprocess.run([str(py), str(script), str(src), str(dst), ",".join(ops)], check=True)
                (out_dir / out).write_bytes(dst.read_bytes())
                digests[out] = sha256(out_dir / out)
                print(f"{out}: {digests[out]} ({(out_dir / out).stat().st_size} bytes)")
    return digests


def check() -> bool:
    """Whether every committed model file matches its manifest entry."""
    from models_tflite.loader import ModelError, manifest, verified_path

    ok = True
    for name, s in manifest().items():
        if s.file in MODELS:
            try:
                verified_path(name)
                print(f"{name}: {s.file} OK")
            except ModelError as exc:
                print(f"{name}: {exc}")
                ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    """Command line: convert (default) or ``--check``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the committed files against the manifest")
    ap.add_argument("--variants", type=Path, metavar="DIR",
                    help="write the variants bench/ocr_runtime.py compares (float32, int8 convolutions) into DIR")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.check:
        return 0 if check() else 1
    if args.variants:
        args.variants.mkdir(parents=True, exist_ok=True)
        convert(args.variants, variants=True)
        return 0
    convert()
    return 0 if check() else 1


if __name__ == "__main__":
    sys.exit(main())
