"""Packaging for the electronic-health-card clinic edge box and its central service."""

from pathlib import Path

from setuptools import find_packages, setup

RUNTIME = [
    "cbor2>=5.6",
    "cryptography>=42",
    "paho-mqtt>=2.1,<3",
    "pydantic>=2.6,<3",
    "uuid6>=2024.1",
    "tomli-w>=1.0",
    "numpy>=1.24",
    "pillow>=10",
    "segno>=1.6",
    "zxing-cpp>=2.2",
    "pyzbar>=0.1.9",
    "python-escpos[serial,usb]>=3.1",
    "pyserial>=3.5",
    "gpiozero>=2.0",
    "base45>=0.4",
    "jsonschema>=4.20",
    "ai-edge-litert>=2.0",
    "onnxruntime>=1.20",
    "tesserocr>=2.7",
    "opencv-python-headless>=4.8",
    "fhir.resources>=8.0,<9",
    "systemd-python>=235; sys_platform == 'linux'",
]

# What only the central service needs (never a box): the dashboard's and enrollment's web server and
# templates, the PostgreSQL driver. Central code imports them lazily or lives in central-only modules
# (central/dashboard/app.py, server.py, central/enrollment_server.py), so a box imports cleanly without them.
CENTRAL = [
    "starlette>=0.37",
    "uvicorn>=0.29",
    "Jinja2>=3.1",
    "psycopg[binary]>=3.1",
]

# On a Raspberry Pi (install.sh adds it there): apt's picamera2 imports simplejpeg, which Raspberry Pi OS
# Bookworm builds against numpy 1.x; this wheel, built for numpy 2, shadows it inside the venv.
PI = ["simplejpeg>=1.8"]

# The test suite covers the central service too, so its extra includes CENTRAL.
TEST = CENTRAL + [
    "pytest>=8",
    "hypothesis>=6.100",
    "pycose>=1.1",
    "playwright>=1.45",
    "httpx2>=2.0",
    "ruff>=0.5",
    "import-linter>=2.1",
]

setup(
    name="ehc-edge",
    version="0.1.0",
    description="Clinic edge boxes for the electronic health card: scan, verify, sign and deliver results",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["foundation", "foundation.*", "edge", "edge.*", "drivers", "drivers.*",
                                    "models_tflite", "models_tflite.*", "mqtt", "mqtt.*", "provisioning",
                                    "provisioning.*", "central", "central.*", "demo", "demo.*"]),
    include_package_data=True,
    package_data={"drivers": ["tickets/*.toml"], "edge.vaccination": ["*.toml"],
                  "edge.credentials": ["valuesets/*.json", "valuesets/LICENSE", "valuesets/README.md"],
                  "models_tflite": ["*.tflite", "*.onnx", "manifest.toml", "LICENSE*", "NOTICE"],
                  "edge.reports": ["*.toml"],
                  "central.dashboard": ["templates/*.html", "static/*.css", "static/*.js"]},
    install_requires=RUNTIME,
    extras_require={"central": CENTRAL, "pi": PI, "test": TEST, "dev": TEST, "fuzz": ["atheris>=2.3"]},
    entry_points={
        "console_scripts": [
            "ehc-edge=edge.cli:main",
            "ehc-central=central.cli:main",
            "ehc-provision=provisioning.cli:main",
        ]
    },
    classifiers=["Programming Language :: Python :: 3.11", "Operating System :: POSIX :: Linux"],
)
