"""Box configuration (``/etc/ehc-edge/edge.toml``), validated strictly.

The sections live here (:mod:`edge.config.box`, :mod:`edge.config.station`, :mod:`edge.config.documents`,
:mod:`edge.config.retention`; the drivers' sections are the drivers' own) and import none of the features:
each feature reads its section from :class:`EdgeConfig`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from drivers.gpio import GpioSettings
from drivers.printer import PrinterSettings
from edge.config.box import (
    DeviceSection,
    IdCardSection,
    IdentitySection,
    LoggingSection,
    MqttSection,
    OutboxSection,
    ProvisioningSection,
    TrustSection,
)
from edge.config.documents import MrzSettings
from edge.config.retention import DEFAULT_MAX_AGE, RetentionSection
from edge.config.station import FaceSection, MasstestSection, StationSection, VaccinationSection, check_regex
from foundation.configbase import ConfigError, StrictModel, load_toml, resolve_path

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_PATH", "ConfigError", "DeviceSection", "EdgeConfig", "FaceSection",
           "IdCardSection", "IdentitySection", "LoggingSection", "MasstestSection", "MqttSection", "MrzSettings",
           "OutboxSection", "ProvisioningSection", "RetentionSection", "StationSection", "TrustSection",
           "VaccinationSection", "check_regex", "load"]

DEFAULT_PATH = Path("/etc/ehc-edge/edge.toml")


class EdgeConfig(StrictModel):
    """Whole box configuration."""

    device: DeviceSection
    mqtt: MqttSection
    outbox: OutboxSection = OutboxSection()
    station: StationSection = StationSection()
    printer: PrinterSettings = PrinterSettings()
    gpio: GpioSettings | None = Field(None, description="Lights, buzzer and button; absent on a box without them")
    idcard: IdCardSection = IdCardSection()
    mrz: MrzSettings | None = Field(None, description="Passports and foreign ID cards under the camera "
                                                      "(check-in); absent: no document reading")
    identity: IdentitySection = IdentitySection()
    trust: TrustSection = TrustSection()
    retention: RetentionSection = RetentionSection()
    vaccination: VaccinationSection = VaccinationSection()
    masstest: MasstestSection = MasstestSection()
    face: FaceSection = FaceSection()
    provisioning: ProvisioningSection = ProvisioningSection()
    logging: LoggingSection = LoggingSection()
    base_dir: str | None = Field(None, description="Folder relative paths are resolved against (default: the file's)")

    def path(self, value: str) -> Path:
        """Resolve a configured path (``credential:`` or relative to the config file)."""
        return resolve_path(value, Path(self.base_dir) if self.base_dir else None)

    @property
    def trust_path(self) -> Path:
        """Absolute path of the box's trust list."""
        p = Path(self.trust.file)
        return p if p.is_absolute() else self.path(self.device.state_dir) / p

    @property
    def outbox_path(self) -> Path:
        """Absolute path of the outbox database."""
        p = Path(self.outbox.path)
        return p if p.is_absolute() else self.path(self.device.state_dir) / p


def load(path: str | Path = DEFAULT_PATH) -> EdgeConfig:
    """Load and validate the box configuration."""
    cfg = load_toml(path, EdgeConfig)
    if cfg.base_dir is None:
        cfg = cfg.model_copy(update={"base_dir": str(Path(path).resolve().parent)})
    return cfg
