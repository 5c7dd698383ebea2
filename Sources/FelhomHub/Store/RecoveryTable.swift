import Foundation
import SQLKit

/// SQL of disaster recovery (`dr_records`: durable, never pruned; columns the box reports are
/// `box_*`) and customer retrieval attempts (`retrieval_attempts`).
enum RecoveryTable {
    static func saveOperatorRecord(
        hostID: String, pbsNamespace: String?, repositoryFingerprint: String?, wrappedEscrowKey: String?,
        tunnelTokenRef: String?, at: Int64, in db: any SQLDatabase
    ) async throws {
        try await db.insert(into: "dr_records").columns(
            "host_id", "pbs_namespace", "repository_fingerprint", "wrapped_escrow_key", "tunnel_token_ref", "updated_at"
        )
        .values(
            SQLBind(hostID), SQLBind(pbsNamespace), SQLBind(repositoryFingerprint), SQLBind(wrappedEscrowKey), SQLBind(tunnelTokenRef), SQLBind(at)
        )
        .onConflict(with: ["host_id"]) {
            $0.set(excludedValueOf: "pbs_namespace").set(excludedValueOf: "repository_fingerprint")
                .set(excludedValueOf: "wrapped_escrow_key").set(excludedValueOf: "tunnel_token_ref").set(excludedValueOf: "updated_at")
        }.run()
    }

    static func saveBoxReport(hostID: String, storageManifest: String, pbsFingerprint: String?, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "dr_records").columns("host_id", "box_storage_manifest", "box_pbs_fingerprint", "box_reported_at")
            .values(SQLBind(hostID), SQLBind(storageManifest), SQLBind(pbsFingerprint), SQLBind(at))
            .onConflict(with: ["host_id"]) {
                $0.set(excludedValueOf: "box_storage_manifest").set(excludedValueOf: "box_pbs_fingerprint").set(excludedValueOf: "box_reported_at")
            }.run()
    }

    /// The box's escrow envelope (opaque JSON text), replacing the one before.
    static func saveBoxEscrow(hostID: String, envelope: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "dr_records").columns("host_id", "box_wrapped_escrow_key", "box_escrow_reported_at")
            .values(SQLBind(hostID), SQLBind(envelope), SQLBind(at))
            .onConflict(with: ["host_id"]) { $0.set(excludedValueOf: "box_wrapped_escrow_key").set(excludedValueOf: "box_escrow_reported_at") }
            .run()
    }

    /// A host's sealed tunnel connector token as stored: never the token in clear.
    struct SealedTunnelToken {
        var sealed: String
        var fingerprint: String
        var tunnelID: String
        var updatedAt: Int64
    }

    /// Stores the host's sealed tunnel connector token; nil removes it.
    static func saveTunnelToken(hostID: String, _ token: SealedTunnelToken?, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "dr_records")
            .columns("host_id", "tunnel_token_sealed", "tunnel_token_fingerprint", "tunnel_id", "tunnel_token_updated_at")
            .values(SQLBind(hostID), SQLBind(token?.sealed), SQLBind(token?.fingerprint), SQLBind(token?.tunnelID), SQLBind(at))
            .onConflict(with: ["host_id"]) {
                $0.set(excludedValueOf: "tunnel_token_sealed").set(excludedValueOf: "tunnel_token_fingerprint")
                    .set(excludedValueOf: "tunnel_id").set(excludedValueOf: "tunnel_token_updated_at")
            }.run()
    }

    /// The host's sealed token; nil when none is set.
    static func tunnelToken(hostID: String, in db: any SQLDatabase) async throws -> SealedTunnelToken? {
        guard
            let row = try await db.select().columns("tunnel_token_sealed", "tunnel_token_fingerprint", "tunnel_id", "tunnel_token_updated_at")
                .from("dr_records").where("host_id", .equal, SQLBind(hostID)).first(),
            let sealed = try row.decode(column: "tunnel_token_sealed", as: String?.self),
            let fingerprint = try row.decode(column: "tunnel_token_fingerprint", as: String?.self)
        else { return nil }
        return SealedTunnelToken(
            sealed: sealed, fingerprint: fingerprint, tunnelID: try row.decode(column: "tunnel_id", as: String?.self) ?? "",
            updatedAt: try row.decode(column: "tunnel_token_updated_at", as: Int64?.self) ?? 0)
    }

    static func record(hostID: String, in db: any SQLDatabase) async throws -> (any SQLRow)? {
        try await db.select().column("*").from("dr_records").where("host_id", .equal, SQLBind(hostID)).first()
    }

    // MARK: - Retrieval attempts

    /// Serializes one client's attempts across PostgreSQL replicas (inside the caller's transaction).
    static func lockClient(_ client: String, in db: any SQLDatabase, kind: HubStore.Kind) async throws {
        guard kind == .postgres else { return }
        try await db.raw("SELECT pg_advisory_xact_lock(hashtext(\(bind: "retrieve|" + client)))").run()
    }

    /// Failed attempts of a client since `since`, for one subject or (nil) all.
    static func failures(client: String, subject: String?, since: Int64, in db: any SQLDatabase) async throws -> Int {
        var query = db.select().column(SQLFunction("COUNT", args: SQLLiteral.all), as: "n").from("retrieval_attempts")
            .where("client", .equal, SQLBind(client)).where("ok", .equal, SQLBind(0)).where("at", .greaterThan, SQLBind(since))
        if let subject { query = query.where("customer_id", .equal, SQLBind(subject)) }
        return try await query.first()?.decode(column: "n", as: Int.self) ?? 0
    }

    /// Reserves an attempt, counted as failed until ``markSucceeded(id:in:)``.
    static func reserve(id: String, subject: String, client: String, at: Int64, in db: any SQLDatabase) async throws {
        try await db.insert(into: "retrieval_attempts").columns("id", "customer_id", "at", "ok", "client")
            .values(SQLBind(id), SQLBind(subject), SQLBind(at), SQLBind(0), SQLBind(client)).run()
    }

    /// Forgets a customer's failed attempts (the operator lifts a lock-out); how many were cleared.
    static func clearFailures(customerID: String, in db: any SQLDatabase) async throws -> Int {
        try await db.delete(from: "retrieval_attempts").where("customer_id", .equal, SQLBind(customerID)).where("ok", .equal, SQLBind(0))
            .returning("id").all().count
    }

    static func markSucceeded(id: String, in db: any SQLDatabase) async throws {
        try await db.update("retrieval_attempts").set("ok", to: SQLBind(1)).where("id", .equal, SQLBind(id)).run()
    }
}
