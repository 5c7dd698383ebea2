import Foundation
import SQLKit

/// Versioned, idempotent schema migrations, the same for SQLite and PostgreSQL.
///
/// Each migration runs once, in a transaction, and is recorded in `schema_migrations`. On
/// PostgreSQL an advisory lock keeps two hub replicas from migrating at the same time.
enum Migrations {
    struct Migration: Sendable {
        let version: Int
        let name: String
        let apply: @Sendable (any SQLDatabase) async throws -> Void
    }

    static let all: [Migration] = [
        Migration(version: 1, name: "core tables") { db in
            try await db.create(table: "customers").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("name", type: .text, .notNull)
                .column("email", type: .text, .notNull)
                .column("domain", type: .text, .notNull)
                .column("timezone", type: .text, .notNull)
                .column("language", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "hosts").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("customer_id", type: .text, .notNull, .references("customers", "id"))
                .column("name", type: .text, .notNull)
                .column("desired_generation", type: .bigint, .notNull, .default(0))
                .column("blocked", type: .int, .notNull, .default(0))
                .column("last_report_at", type: .bigint)
                .column("liveness", type: .text, .notNull, .default("unknown"))
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "guests").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("host_id", type: .text, .notNull, .references("hosts", "id"))
                .column("name", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "api_keys").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("hash", type: .text, .notNull, .unique)
                .column("kind", type: .text, .notNull)
                .column("subject_id", type: .text, .notNull)
                .column("customer_id", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("revoked_at", type: .bigint)
                .run()
            try await db.create(table: "host_reports").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("host_id", type: .text, .notNull, .references("hosts", "id"))
                .column("received_at", type: .bigint, .notNull)
                .column("body", type: .text, .notNull)
                .run()
            try await db.create(index: "host_reports_host_time").on("host_reports").column("host_id").column("received_at").run()
            try await db.create(table: "host_report_latest").ifNotExists()
                .column("host_id", type: .text, .primaryKey(autoIncrement: false), .references("hosts", "id"))
                .column("received_at", type: .bigint, .notNull)
                .column("body", type: .text, .notNull)
                .run()
            try await db.create(table: "events").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("at", type: .bigint, .notNull)
                .column("source", type: .text, .notNull)
                .column("host_id", type: .text)
                .column("guest_id", type: .text)
                .column("customer_id", type: .text)
                .column("type", type: .text, .notNull)
                .column("severity", type: .text, .notNull)
                .column("data", type: .text, .notNull)
                .run()
            try await db.create(index: "events_host_time").on("events").column("host_id").column("at").run()
            try await db.create(index: "events_type_time").on("events").column("type").column("at").run()
        },
        Migration(version: 2, name: "guest reports") { db in
            try await db.create(table: "guest_reports").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("guest_id", type: .text, .notNull, .references("guests", "id"))
                .column("received_at", type: .bigint, .notNull)
                .column("body", type: .text, .notNull)
                .run()
            try await db.create(index: "guest_reports_guest_time").on("guest_reports").column("guest_id").column("received_at").run()
            try await db.create(table: "guest_report_latest").ifNotExists()
                .column("guest_id", type: .text, .primaryKey(autoIncrement: false), .references("guests", "id"))
                .column("received_at", type: .bigint, .notNull)
                .column("body", type: .text, .notNull)
                .run()
            try await db.alter(table: "guests").column("last_report_at", type: .bigint).run()
        },
        Migration(version: 3, name: "notification outbox") { db in
            try await db.create(table: "notification_outbox").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("channel", type: .text, .notNull)
                .column("recipient", type: .text, .notNull)
                .column("language", type: .text, .notNull)
                .column("host_id", type: .text)
                .column("event_id", type: .text, .notNull)
                .column("event_type", type: .text, .notNull)
                .column("subject", type: .text, .notNull)
                .column("body", type: .text, .notNull)
                .column("status", type: .text, .notNull)
                .column("attempts", type: .int, .notNull, .default(0))
                .column("next_attempt_at", type: .bigint, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("sent_at", type: .bigint)
                .column("last_error", type: .text)
                .run()
            try await db.create(index: "outbox_due").on("notification_outbox").column("status").column("next_attempt_at").run()
            try await db.create(index: "outbox_cooldown").on("notification_outbox").column("channel").column("host_id").column("event_type").column(
                "created_at"
            ).run()
            try await db.create(table: "notification_log").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("outbox_id", type: .text, .notNull)
                .column("at", type: .bigint, .notNull)
                .column("result", type: .text, .notNull)
                .column("detail", type: .text, .notNull)
                .run()
            try await db.alter(table: "customers").column("notify_types", type: .text).run()
        },
        Migration(version: 4, name: "desired state and signed-op queue") { db in
            // The draft the operator edits, and every published generation (durable: DR reads it).
            try await db.create(table: "desired_drafts").ifNotExists()
                .column("host_id", type: .text, .primaryKey(autoIncrement: false), .references("hosts", "id"))
                .column("spec", type: .text, .notNull)
                .column("updated_at", type: .bigint, .notNull)
                .run()
            try await db.create(table: "desired_published").ifNotExists()
                .column("host_id", type: .text, .notNull, .references("hosts", "id"))
                .column("generation", type: .bigint, .notNull)
                .column("spec", type: .text, .notNull)
                .column("published_at", type: .bigint, .notNull)
                .primaryKey("host_id", "generation")
                .run()
            try await db.create(table: "operator_keys").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("public_key", type: .text, .notNull)
                .column("fingerprint", type: .text, .notNull, .unique)
                .column("role", type: .text, .notNull)
                .column("name", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("revoked_at", type: .bigint)
                .run()
            try await db.create(table: "signed_ops").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("host_id", type: .text, .notNull, .references("hosts", "id"))
                .column("guest_id", type: .text)
                .column("customer_id", type: .text, .notNull)
                .column("op", type: .text, .notNull)
                .column("blob", type: .text, .notNull)
                .column("nonce", type: .text, .notNull, .unique)
                .column("expires_at", type: .bigint, .notNull)
                .column("status", type: .text, .notNull)
                .column("signature", type: .text)
                .column("signer", type: .text)
                .column("reason", type: .text)
                .column("created_at", type: .bigint, .notNull)
                .column("signed_at", type: .bigint)
                .column("delivered_at", type: .bigint)
                .column("finished_at", type: .bigint)
                .run()
            try await db.create(index: "signed_ops_host_status").on("signed_ops").column("host_id").column("status").run()
        },
        Migration(version: 5, name: "enrollment") { db in
            try await db.create(table: "enrollment_tokens").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("host_id", type: .text, .notNull, .references("hosts", "id"))
                .column("hash", type: .text, .notNull, .unique)
                .column("expires_at", type: .bigint, .notNull)
                .column("used_at", type: .bigint)
                .column("created_at", type: .bigint, .notNull)
                .run()
            try await db.alter(table: "hosts").column("enrolled_at", type: .bigint).run()
        },
        Migration(version: 6, name: "dashboard sessions") { db in
            try await db.create(table: "dashboard_sessions").ifNotExists()
                .column("id_hash", type: .text, .primaryKey(autoIncrement: false))
                .column("csrf", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("expires_at", type: .bigint, .notNull)
                .run()
        },
        Migration(version: 7, name: "cloudflare zone per customer") { db in
            try await db.alter(table: "customers").column("cloudflare_zone_id", type: .text).run()
            try await db.alter(table: "customers").column("geo_countries", type: .text).run()
        },
        Migration(version: 8, name: "config overrides, retrieval, disaster recovery") { db in
            try await db.alter(table: "customers").column("config_overrides", type: .text).run()
            try await db.alter(table: "customers").column("retrieval_hash", type: .text).run()
            try await db.create(table: "retrieval_attempts").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("customer_id", type: .text, .notNull)
                .column("at", type: .bigint, .notNull)
                .column("ok", type: .int, .notNull)
                .run()
            try await db.create(index: "retrieval_attempts_customer_time").on("retrieval_attempts").column("customer_id").column("at").run()
            // Durable per host: never pruned. Columns the box reports are prefixed box_.
            try await db.create(table: "dr_records").ifNotExists()
                .column("host_id", type: .text, .primaryKey(autoIncrement: false), .references("hosts", "id"))
                .column("pbs_namespace", type: .text)
                .column("repository_fingerprint", type: .text)
                .column("wrapped_escrow_key", type: .text)
                .column("tunnel_token_ref", type: .text)
                .column("updated_at", type: .bigint)
                .column("box_storage_manifest", type: .text)
                .column("box_pbs_fingerprint", type: .text)
                .column("box_reported_at", type: .bigint)
                .run()
        },
        Migration(version: 9, name: "dashboard sign-in failures") { db in
            try await db.create(table: "dashboard_login_failures").ifNotExists()
                .column("id", type: .text, .primaryKey(autoIncrement: false))
                .column("at", type: .bigint, .notNull)
                .run()
        },
        Migration(version: 10, name: "idempotent guest keys") { db in
            try await db.raw("ALTER TABLE guests ADD COLUMN idempotency_key TEXT").run()
            try await db.raw("CREATE UNIQUE INDEX IF NOT EXISTS guests_idempotency ON guests (host_id, idempotency_key)").run()
        },
        Migration(version: 11, name: "kill switch: suspended customers") { db in
            try await db.raw("ALTER TABLE customers ADD COLUMN suspended_at BIGINT").run()
            // Copied onto each host row so report ingest needs no join to know a box is muted.
            try await db.raw("ALTER TABLE hosts ADD COLUMN customer_suspended INTEGER NOT NULL DEFAULT 0").run()
        },
        Migration(version: 12, name: "per-client limits and operator-bound sessions") { db in
            try await db.raw("ALTER TABLE retrieval_attempts ADD COLUMN client TEXT").run()
            try await db.raw("CREATE INDEX IF NOT EXISTS retrieval_attempts_client_time ON retrieval_attempts (client, at)").run()
            try await db.raw("ALTER TABLE dashboard_login_failures ADD COLUMN client TEXT").run()
            try await db.raw("ALTER TABLE dashboard_sessions ADD COLUMN operator_key_hash TEXT").run()
            try await db.raw("ALTER TABLE dashboard_sessions ADD COLUMN last_seen_at BIGINT").run()
        },
        Migration(version: 13, name: "unique customer domains") { db in
            // Retrieval and geo rules find a customer by domain: two with one domain is a fault to fix
            // by hand (the migration stops and names them) rather than guess which one is meant.
            let dups = try await db.raw("SELECT domain FROM customers GROUP BY domain HAVING COUNT(*) > 1").all()
                .map { try $0.decode(column: "domain", as: String.self) }
            guard dups.isEmpty else {
                throw StoreError(
                    code: .query, message: "customers share a domain (\(dups.joined(separator: ", "))): give each its own, then start again")
            }
            try await db.raw("CREATE UNIQUE INDEX IF NOT EXISTS customers_domain ON customers (domain)").run()
        },
        Migration(version: 14, name: "applied generation") { db in
            try await db.raw("ALTER TABLE hosts ADD COLUMN applied_generation BIGINT").run()
        },
        Migration(version: 15, name: "secret bundles (sealed)") { db in
            try await db.create(table: "secret_bundles").ifNotExists()
                .column("guest_id", type: .text, .notNull, .references("guests", "id"))
                .column("bundle", type: .text, .notNull)
                .column("version", type: .bigint, .notNull)
                .column("sealed", type: .text, .notNull)
                .column("keys", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .primaryKey("guest_id", "bundle", "version")
                .run()
        },
        Migration(version: 16, name: "box-reported escrow envelope") { db in
            // The box's PBS key wrapped under the customer's recovery code (opaque to the hub).
            try await db.raw("ALTER TABLE dr_records ADD COLUMN box_wrapped_escrow_key TEXT").run()
            try await db.raw("ALTER TABLE dr_records ADD COLUMN box_escrow_reported_at BIGINT").run()
        },
        Migration(version: 17, name: "recovery enrollment tokens") { db in
            // `enroll` (a box's first enrollment) or `recovery` (a replacement box for a lost one).
            try await db.raw("ALTER TABLE enrollment_tokens ADD COLUMN purpose TEXT NOT NULL DEFAULT 'enroll'").run()
        },
        Migration(version: 18, name: "volume snapshots in object storage") { db in
            // Metadata only: the data keys are wrapped by the box's snapshot master key.
            try await db.create(table: "volume_snapshots").ifNotExists()
                .column("host_id", type: .text, .notNull, .references("hosts", "id"))
                .column("snapshot_id", type: .text, .notNull)
                .column("volume_id", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("size", type: .bigint, .notNull)
                .column("object_size", type: .bigint, .notNull)
                .column("checksum", type: .text, .notNull)
                .column("encryption_key_id", type: .text, .notNull)
                .column("wrapped_data_key", type: .text, .notNull)
                .column("object_key", type: .text, .notNull)
                .column("state", type: .text, .notNull)
                .column("recorded_at", type: .bigint, .notNull)
                .column("deleted_at", type: .bigint)
                .primaryKey("host_id", "snapshot_id")
                .run()
            try await db.raw("CREATE INDEX IF NOT EXISTS volume_snapshots_volume ON volume_snapshots (host_id, volume_id, created_at)").run()
        },
        Migration(version: 19, name: "customer quotas") { db in
            // One row per customer with limits; a NULL column is no limit.
            try await db.create(table: "customer_quotas").ifNotExists()
                .column("customer_id", type: .text, .primaryKey(autoIncrement: false), .references("customers", "id"))
                .column("max_memory_mb", type: .bigint)
                .column("max_guests", type: .bigint)
                .column("max_routes", type: .bigint)
                .column("max_public_ipv4", type: .bigint)
                .column("updated_at", type: .bigint, .notNull)
                .run()
        },
        Migration(version: 20, name: "signed releases and their assets") { db in
            // The operator-signed manifest and signature verbatim; the asset in 4 MiB chunks so
            // neither an upload nor a download holds a whole binary in memory.
            try await db.create(table: "releases").ifNotExists()
                .column("component", type: .text, .notNull)
                .column("version", type: .text, .notNull)
                .column("manifest", type: .text, .notNull)
                .column("signature", type: .text, .notNull)
                .column("sha256", type: .text, .notNull)
                .column("size", type: .bigint, .notNull)
                .column("signer", type: .text, .notNull)
                .column("created_at", type: .bigint, .notNull)
                .column("uploaded_at", type: .bigint)
                .primaryKey("component", "version")
                .run()
            try await db.create(table: "release_chunks").ifNotExists()
                .column("component", type: .text, .notNull)
                .column("version", type: .text, .notNull)
                .column("idx", type: .bigint, .notNull)
                .column("data", type: .blob, .notNull)
                .primaryKey("component", "version", "idx")
                .run()
            // Which hosts a release was rolled out to, in which stage (canary first, then all).
            try await db.create(table: "release_rollouts").ifNotExists()
                .column("component", type: .text, .notNull)
                .column("version", type: .text, .notNull)
                .column("host_id", type: .text, .notNull)
                .column("stage", type: .text, .notNull)
                .column("at", type: .bigint, .notNull)
                .primaryKey("component", "version", "host_id")
                .run()
        },
        Migration(version: 21, name: "tunnel connector tokens (sealed)") { db in
            // The host's Cloudflare tunnel connector token, AES-GCM under `secrets_key` (a durable DR
            // source like the rest of dr_records); the fingerprint and tunnel id let views say which token is set.
            try await db.raw("ALTER TABLE dr_records ADD COLUMN tunnel_token_sealed TEXT").run()
            try await db.raw("ALTER TABLE dr_records ADD COLUMN tunnel_token_fingerprint TEXT").run()
            try await db.raw("ALTER TABLE dr_records ADD COLUMN tunnel_id TEXT").run()
            try await db.raw("ALTER TABLE dr_records ADD COLUMN tunnel_token_updated_at BIGINT").run()
        },
        Migration(version: 22, name: "leader leases") { db in
            // Which replica runs the checkers, as a lease renewed on each pass through the pool
            // (a session advisory lock died with its connection on a PostgreSQL restart, and the
            // replica holding it could not tell). Unused on SQLite (one process).
            try await db.raw("CREATE TABLE IF NOT EXISTS leader_leases (key BIGINT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)")
                .run()
        },
        Migration(version: 23, name: "report history: state digest and heartbeat") { db in
            // A report whose state (everything but the sampled metrics) is unchanged adds a history
            // row only once per `report_history_heartbeat_seconds`; decided by the UPDATE of the
            // host row that every report makes (so replicas agree), which also says whether it is due.
            try await db.raw("ALTER TABLE hosts ADD COLUMN report_state_hash TEXT").run()
            try await db.raw("ALTER TABLE hosts ADD COLUMN report_history_at BIGINT").run()
            try await db.raw("ALTER TABLE hosts ADD COLUMN report_history_due INTEGER NOT NULL DEFAULT 1").run()
        },
    ]

    static func apply(to store: HubStore) async throws {
        for migration in all {
            try await store.transaction { db in
                if store.kind == .postgres {
                    // Held to the end of the transaction: replicas migrate one after another
                    // (concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL's catalog otherwise).
                    try await db.raw("SELECT pg_advisory_xact_lock(7265481)").run()
                }
                try await db.create(table: "schema_migrations").ifNotExists()
                    .column("version", type: .int, .primaryKey(autoIncrement: false))
                    .column("name", type: .text, .notNull)
                    .column("applied_at", type: .bigint, .notNull)
                    .run()
                let done = try await db.select().column("version").from("schema_migrations")
                    .where("version", .equal, SQLBind(migration.version)).first()
                guard done == nil else { return }
                try await migration.apply(db)
                try await db.insert(into: "schema_migrations").columns("version", "name", "applied_at")
                    .values(SQLBind(migration.version), SQLBind(migration.name), SQLBind(Int64(Date().timeIntervalSince1970))).run()
            }
        }
    }

    /// The highest applied version.
    static func currentVersion(_ store: HubStore) async throws -> Int {
        try await store.withDB { db in
            let rows = try await db.select().column("version").from("schema_migrations").all()
            return try rows.map { try $0.decode(column: "version", as: Int.self) }.max() ?? 0
        }
    }
}
