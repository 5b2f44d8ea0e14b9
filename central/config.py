"""Central service configuration (``/etc/ehc-edge/central.toml``), validated strictly."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from foundation.configbase import StrictModel, load_toml, resolve_path
from mqtt.topics import INGEST_SHARE_GROUP, check_name

DEFAULT_PATH = Path("/etc/ehc-edge/central.toml")


class BrokerSection(StrictModel):
    """The Mosquitto broker the boxes connect to, and the config generated for it."""

    host: str = Field("127.0.0.1", description="Address the ingest uses to reach the broker")
    port: int = Field(8883, ge=1, le=65535, description="TLS listener port")
    bind: str = Field("0.0.0.0", description="Address the broker listens on")
    ca: str = Field("pki/ca.crt", description="Device CA certificate (client certificates must chain to it)")
    cert: str = Field("pki/broker.crt", description="Broker server certificate")
    key: str = Field("pki/broker.key", description="Broker server key (path or credential:NAME)")
    conf_dir: str = Field("mosquitto", description="Folder for the generated mosquitto.conf and ACL")
    persistence_dir: str = Field("mosquitto/data", description="Mosquitto persistence folder")
    max_message_bytes: int = Field(256 * 1024, ge=1024, description="Largest accepted MQTT packet")
    max_queued_messages: int = Field(200000, ge=100, description="Messages queued per offline client session")
    user: str = Field("mosquitto", description="Account mosquitto drops to when started as root")
    autosave_interval: int = Field(10, ge=1, description="Seconds between persistence saves")
    operator_cert: str = Field("pki/operator.crt", description="Client certificate of the ehc-central commands that "
                                                             "talk to the broker (CN ehc-central)")
    operator_key: str = Field("pki/operator.key", description="Its key (path or credential:NAME)")


class IngestSection(StrictModel):
    """The ingest workers."""

    cert: str = Field("pki/ingest-{worker}.crt", description="Client certificate of worker {worker} "
                                                             "(CN <client_id>-<worker>)")
    key: str = Field("pki/ingest-{worker}.key", description="Its key (path or credential:NAME; {worker} = the "
                                                            "worker's number)")
    client_id: str = Field("ehc-ingest", description="Prefix of the ingest workers' MQTT identities: worker n is "
                                                     "<client_id>-<n> (certificate CN, user name and client id)")
    share_group: str = Field(INGEST_SHARE_GROUP, description="MQTT v5 shared-subscription group; a secret of the "
                                                             "site (init makes a random one): a box that knows it "
                                                             "can join the group and hold back deliveries")
    workers: int = Field(1, ge=1, le=32, description="Ingest worker processes sharing the subscription")
    batch_size: int = Field(500, ge=1, le=10000, description="Results stored per transaction at most")
    batch_wait: float = Field(0.01, ge=0, le=5, description="Seconds to wait to fill a batch")
    receive_maximum: int = Field(1000, ge=1, le=65535, description="Unacknowledged messages the broker may send")
    session_expiry: int = Field(7 * 86400, ge=0, description="Broker keeps the ingest session this long")

    @field_validator("client_id", "share_group")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "name")

    def identity(self, worker: int) -> str:
        """The MQTT identity of worker ``worker``: its certificate's CN, user name and client id."""
        return f"{self.client_id}-{worker}"


class DatabaseSection(StrictModel):
    """Where results are stored."""

    url: str = Field("sqlite:///var/lib/ehc-central/central.db",
                     description="sqlite:///path (default) or postgresql://user@host/db")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return v


class EnrollmentSection(StrictModel):
    """The HTTPS enrollment endpoint boxes call with a one-time token."""

    bind: str = Field("0.0.0.0", description="Address the enrollment endpoint listens on")
    port: int = Field(8443, ge=1, le=65535, description="HTTPS port of the enrollment endpoint")
    public_url: str | None = Field(None, description="URL boxes use (default https://<broker.host>:<port>)")
    token_ttl: int = Field(1800, ge=60, le=7 * 86400, description="Default token lifetime in seconds")
    cert_days: int = Field(90, ge=1, le=825, description="Lifetime of device certificates")
    signing_key: str = Field("pki/central-sign.key", description="Central signing key (path or credential:NAME)")
    ca_key: str = Field("pki/ca.key", description="Device CA private key (path or credential:NAME)")
    crl: str = Field("pki/crl.pem", description="Certificate revocation list Mosquitto loads")
    pseudonym_key: str = Field("pki/pseudonym.key", description="Deployment key for ID-number pseudonyms, handed "
                                                                "to every box at enrollment (path or credential:NAME)")
    seal_key: str = Field("pki/central-seal.key", description="Central X25519 key: boxes seal personal fields to its "
                                                              "public half, the ingest opens them (path or "
                                                              "credential:NAME)")


class TrustSection(StrictModel):
    """The signed trust list and the site's own EHC1 card issuer."""

    dir: str = Field("trust", description="Folder of source.json (what the list holds) and trust-list.cose (signed)")
    ehc1_issuer_key: str = Field("pki/ehc1-issuer.key", description="Key that signs EHC1 cards issued here "
                                                                   "(path or credential:NAME)")
    ehc1_issuer_id: str = Field("EHC-SITE", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                                description="Issuer id written into EHC1 cards issued here")


class DashboardSection(StrictModel):
    """The fleet dashboard (HTTPS web pages for clinic managers and technicians)."""

    bind: str = Field("127.0.0.1", description="Address the dashboard listens on")
    port: int = Field(8444, ge=1, le=65535, description="HTTPS port of the dashboard")
    cert: str | None = Field(None, description="Server certificate (default: the broker's)")
    key: str | None = Field(None, description="Server key, path or credential:NAME (default: the broker's)")
    session_idle: int = Field(1800, ge=60, le=86400, description="Seconds of inactivity that end a session")
    session_max: int = Field(12 * 3600, ge=300, le=7 * 86400,
                             description="Seconds after the login that end a session, however active")
    mqtt_cert: str = Field("pki/dashboard.crt", description="The dashboard's MQTT client certificate (CN ehc-dashboard)")
    mqtt_key: str = Field("pki/dashboard.key", description="Its key (path or credential:NAME)")


class LoggingSection(StrictModel):
    """Log level."""

    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class CentralConfig(StrictModel):
    """Whole central-service configuration."""

    broker: BrokerSection = BrokerSection()
    trust: TrustSection = TrustSection()
    ingest: IngestSection = IngestSection()
    database: DatabaseSection = DatabaseSection()
    enrollment: EnrollmentSection = EnrollmentSection()
    dashboard: DashboardSection = DashboardSection()
    logging: LoggingSection = LoggingSection()
    base_dir: str | None = Field(None, description="Folder relative paths are resolved against (default: the file's)")

    def path(self, value: str) -> Path:
        """Resolve a configured path (``credential:`` or relative to the config file)."""
        return resolve_path(value, Path(self.base_dir) if self.base_dir else None)

    def ingest_cert(self, worker: int) -> tuple[Path, Path]:
        """Certificate and key of ingest worker ``worker``."""
        return (self.path(self.ingest.cert.replace("{worker}", str(worker))),
                self.path(self.ingest.key.replace("{worker}", str(worker))))

    @property
    def enrollment_url(self) -> str:
        """Base URL of the enrollment endpoint as boxes see it."""
        return self.enrollment.public_url or f"https://{self.broker.host}:{self.enrollment.port}"

    @property
    def database_url(self) -> str:
        """Database URL with a relative SQLite path resolved against the config folder."""
        url = self.database.url
        if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
            return "sqlite://" + str(self.path(url[len("sqlite:"):]).resolve())
        return url


def load(path: str | Path = DEFAULT_PATH) -> CentralConfig:
    """Load and validate the central configuration."""
    cfg = load_toml(path, CentralConfig)
    if cfg.base_dir is None:
        cfg = cfg.model_copy(update={"base_dir": str(Path(path).resolve().parent)})
    return cfg
