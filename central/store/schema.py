"""The central store's tables (DDL for both back ends) and the columns added to them since their first version.

The statements are written once with placeholders for the types that differ between SQLite and PostgreSQL
(:func:`statements`); :mod:`central.store.base` runs them when a store is opened.
"""

from __future__ import annotations


def statements(blob: str, real: str, serial: str) -> list[str]:
    """Every ``CREATE TABLE``/``CREATE INDEX`` of the store, for a back end's binary, real and serial key types."""
    return [
        f"""CREATE TABLE IF NOT EXISTS devices (
            device_id TEXT PRIMARY KEY, clinic TEXT NOT NULL, cert_pem TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active', registered_at {real} NOT NULL,
            presence TEXT, presence_at {real}, state_json TEXT, health_json TEXT, last_seen {real})""",
        f"""CREATE TABLE IF NOT EXISTS results (
            msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, clinic TEXT NOT NULL,
            boot_id BIGINT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, ts_ms BIGINT NOT NULL,
            body_json TEXT NOT NULL, envelope {blob} NOT NULL, received_at {real} NOT NULL,
            UNIQUE (device_id, boot_id, seq))""",
        "CREATE INDEX IF NOT EXISTS results_received ON results (received_at)",
        f"""CREATE TABLE IF NOT EXISTS device_boots (
            device_id TEXT NOT NULL, boot_id BIGINT NOT NULL, max_seq BIGINT NOT NULL,
            received BIGINT NOT NULL, first_seen {real} NOT NULL, PRIMARY KEY (device_id, boot_id))""",
        f"""CREATE TABLE IF NOT EXISTS sequence_gaps (
            id {serial}, device_id TEXT NOT NULL, boot_id BIGINT NOT NULL,
            first_missing BIGINT NOT NULL, last_missing BIGINT NOT NULL, detected_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS quarantine (
            msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, boot_id BIGINT NOT NULL, seq BIGINT NOT NULL,
            kind TEXT NOT NULL, envelope {blob} NOT NULL, received_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS certificates (
            serial TEXT PRIMARY KEY, device_id TEXT NOT NULL, not_after {real} NOT NULL, issued_at {real} NOT NULL,
            revoked_at {real})""",
        f"""CREATE TABLE IF NOT EXISTS enrollment_tokens (
            token_hash TEXT PRIMARY KEY, clinic TEXT NOT NULL, serial TEXT NOT NULL, created_at {real} NOT NULL,
            expires_at {real} NOT NULL, used_at {real}, device_id TEXT, reenroll BIGINT NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE IF NOT EXISTS cards (
            card_index TEXT PRIMARY KEY, status TEXT NOT NULL, health TEXT NOT NULL, updated_at {real} NOT NULL,
            id_ref TEXT)""",
        "CREATE INDEX IF NOT EXISTS cards_id_ref ON cards (id_ref)",
        f"""CREATE TABLE IF NOT EXISTS card_lookups (
            msg_id TEXT PRIMARY KEY, card_index TEXT NOT NULL, found BIGINT NOT NULL, status TEXT, health TEXT,
            resolved_at {real} NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS children (child_ref TEXT PRIMARY KEY, birth_date TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS vaccinations (
            msg_id TEXT PRIMARY KEY, child_ref TEXT NOT NULL, vaccine TEXT NOT NULL, product TEXT, dose BIGINT,
            given_on TEXT NOT NULL, trace_code TEXT, lot TEXT, expiry TEXT, override BIGINT NOT NULL,
            recorded_at {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS vaccinations_child ON vaccinations (child_ref)",
        f"""CREATE TABLE IF NOT EXISTS rejections (
            id {serial}, at {real} NOT NULL, reason TEXT NOT NULL, topic TEXT NOT NULL,
            size BIGINT NOT NULL, device_id TEXT, sha256 TEXT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS personal (
            msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, fields_json TEXT NOT NULL, stored_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS dead_letters (
            sha256 TEXT PRIMARY KEY, topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL,
            device_id TEXT, payload {blob} NOT NULL, first_at {real} NOT NULL, last_at {real} NOT NULL,
            deliveries BIGINT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS face_templates (
            id_ref TEXT PRIMARY KEY, clinic TEXT NOT NULL, device_id TEXT NOT NULL, msg_id TEXT NOT NULL,
            topic TEXT NOT NULL, sealed_json TEXT NOT NULL, consent_json TEXT NOT NULL, enrolled_at {real} NOT NULL,
            revoked_at {real}, revoked_by TEXT)""",
        *audit_tables(real, serial),
    ]


def audit_tables(real: str, serial: str) -> list[str]:
    """Tables of the central audit check (:mod:`central.audit_check` reads and writes them)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS audit_chain (
            device_id TEXT NOT NULL, chain TEXT NOT NULL, pos BIGINT NOT NULL, hash TEXT NOT NULL,
            proven BIGINT NOT NULL, msg_id TEXT, seen_at {real} NOT NULL, PRIMARY KEY (device_id, chain, pos))""",
        f"""CREATE TABLE IF NOT EXISTS audit_heads (
            device_id TEXT NOT NULL, chain TEXT NOT NULL, pos BIGINT NOT NULL, head TEXT,
            first_seen {real} NOT NULL, updated_at {real} NOT NULL, PRIMARY KEY (device_id, chain))""",
        f"""CREATE TABLE IF NOT EXISTS audit_alerts (
            id {serial}, device_id TEXT NOT NULL, chain TEXT, kind TEXT NOT NULL, first_pos BIGINT,
            last_pos BIGINT, detail TEXT, msg_id TEXT, detected_at {real} NOT NULL, resolved_at {real})""",
        "CREATE INDEX IF NOT EXISTS audit_alerts_device ON audit_alerts (device_id, kind)",
    ]


# Columns added after a table's first version: (table, column, SQL type and default). The CREATE TABLE statements
# above already hold them; an older database gets them on open.
ADDED_COLUMNS = [("certificates", "revoked_at", "{real}"),
                 ("enrollment_tokens", "reenroll", "BIGINT NOT NULL DEFAULT 0")]
