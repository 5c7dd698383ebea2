import Foundation
import SQLKit
import Synchronization

extension HubStore {
    /// Runs `body` with a question "does this process lead?" — on SQLite (one process) always yes;
    /// on PostgreSQL one replica at a time holds a lease (`leader_leases`), taken or renewed by each
    /// question in one conditional upsert and valid for `ttl` seconds of the database's clock.
    ///
    /// Why a lease and not a session advisory lock: the lock lived on one leased connection, and a
    /// PostgreSQL restart ended the session (freeing the lock) while the replica went on believing
    /// it led; a replica waiting for the lock was left with a dead connection and never took over.
    /// The lease goes through the pool, which reconnects. A replica killed -9 stops renewing; another
    /// takes over once `ttl` has passed. Transitions are written conditionally as well, so a brief
    /// overlap of two leaders cannot emit an event twice.
    func withLeaderLock<T: Sendable>(
        key: Int64, ttl: Int, _ body: @Sendable (_ isLeader: @Sendable () async throws -> Bool) async throws -> T
    ) async throws -> T {
        switch backend {
        case .sqlite:
            return try await body({ true })
        case .postgres:
            let holder = "replica-" + UUID().uuidString
            return try await body({
                try await self.withDB { db in try await LeaderLeases.takeOrRenew(key: key, holder: holder, ttl: ttl, in: db) }
            })
        }
    }
}

/// SQL of the leader lease (PostgreSQL).
enum LeaderLeases {
    /// Takes the lease if it is free or expired, or renews it if `holder` has it; whether `holder` leads now.
    static func takeOrRenew(key: Int64, holder: String, ttl: Int, in db: any SQLDatabase) async throws -> Bool {
        let row = try await db.raw(
            """
            INSERT INTO leader_leases (key, holder, expires_at)
            VALUES (\(bind: key), \(bind: holder), CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) + \(bind: Int64(ttl)))
            ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)
            RETURNING holder
            """
        ).first()
        return try row?.decode(column: "holder", as: String.self) == holder
    }
}

/// Whether this replica announced that it leads.
final class LeaderFlag: Sendable {
    let value = Mutex(false)
}
