"""The box's own sections of edge.toml: ``[device]``, ``[mqtt]``, ``[outbox]``, ``[provisioning]``,
``[identity]``, ``[idcard]``, ``[trust]`` and ``[logging]``."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from foundation.configbase import StrictModel
from mqtt.topics import check_name


class DeviceSection(StrictModel):
    """Identity of this box."""

    id: str = Field(description="Device id; equals the CN of the device certificate")
    clinic: str = Field(description="Clinic the box is registered to")
    key: str = Field(description="Device private key (PEM path or credential:NAME)")
    cert: str = Field(description="Device certificate (PEM path)")
    state_dir: str = Field("/var/lib/ehc-edge", description="Writable folder for the outbox and counters")

    @field_validator("id", "clinic")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "name")


class MqttSection(StrictModel):
    """Connection to the central broker."""

    host: str = Field(description="Broker host name or address")
    port: int = Field(8883, ge=1, le=65535, description="Broker TLS port")
    ca: str = Field(description="CA certificate that signed the broker's server certificate")
    keepalive: int = Field(30, ge=5, le=600, description="MQTT keepalive in seconds")
    max_inflight: int = Field(200, ge=1, le=1000, description="Messages published and not yet receipted "
                                                              "(at most the broker's receive maximum, 1000)")
    receipt_timeout: float = Field(30.0, gt=0, description="Seconds to wait for the central receipt before resending")
    reconnect_min: float = Field(1.0, gt=0, description="First reconnect delay (seconds)")
    reconnect_max: float = Field(60.0, gt=0, description="Longest reconnect delay (seconds)")
    health_interval: float = Field(60.0, gt=0, description="Seconds between health reports")
    session_expiry: int = Field(86400, ge=0, description="MQTT v5 session expiry (seconds) so receipts wait for us")

    @model_validator(mode="after")
    def _backoff(self) -> MqttSection:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        return self


class OutboxSection(StrictModel):
    """Durable queue of signed results."""

    path: str = Field("outbox.db", description="SQLite file (relative to device.state_dir)")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024, description="Hard bound on stored messages")
    alert_fraction: float = Field(0.8, gt=0, lt=1, description="Raise an alert above this share of max_bytes")


class ProvisioningSection(StrictModel):
    """Where the box renews its certificate (written by ``ehc-provision enroll``)."""

    url: str | None = Field(None, pattern=r"^https://", description="Enrollment service URL, https://host:port")
    central_key: str | None = Field(None, description="Central signing public key (PEM); receipts and the central "
                                                      "status must verify with it. Needed by the uplink")
    seal_key: str | None = Field(None, description="Central X25519 public key (PEM) personal fields are sealed to; "
                                                   "without it results with personal fields are refused")
    renew_fraction: float = Field(1 / 3, gt=0, lt=1, description="Renew when less than this share of the "
                                                                  "certificate's lifetime is left")


class IdentitySection(StrictModel):
    """What leaves the box about identity documents."""

    pseudonym_key: str | None = Field(None, description="Deployment key (file of at least 16 random bytes, written by "
                                                         "ehc-provision enroll) for the ID numbers' pseudonyms")
    send_id_number: bool = Field(False, description="Send the ID number itself as well (only where the clinic's "
                                                    "rules require it)")


class IdCardSection(StrictModel):
    """The resident ID card reader (SAM, serial)."""

    port: str | None = Field(None, description="Serial device, best a /dev/serial/by-id/ path; absent: no reader")
    poll_interval: float = Field(0.1, gt=0, le=5, description="Seconds between polls for a card")


class TrustSection(StrictModel):
    """The signed trust list the box verifies credentials with."""

    file: str = Field("trust-list.cose", description="Where the box keeps it (relative to device.state_dir)")
    max_age: float = Field(7 * 86400.0, gt=0, description="Seconds after which the list is stale: credentials "
                                                          "it verifies come out yellow, not green")
    clock_skew: float = Field(30.0, ge=0, le=600, description="Seconds of clock difference allowed when checking "
                                                              "a credential's issue and expiry times")


class LoggingSection(StrictModel):
    """Log level."""

    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
