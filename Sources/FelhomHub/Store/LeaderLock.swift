import Foundation
import SQLKit
import Synchronization

extension HubStore {
    /// Runs `body` with a question "does this process lead?" — on SQLite (one process) always yes;
    /// on PostgreSQL one replica at a time holds a session advisory lock on a connection leased for
    /// as long as `body` runs (the lock goes with the connection if the replica dies).
    func withLeaderLock<T: Sendable>(key: Int64, _ body: @Sendable (_ isLeader: @Sendable () async throws -> Bool) async throws -> T) async throws
        -> T
    {
        switch backend {
        case .sqlite:
            return try await body({ true })
        case .postgres(let client):
            return try await client.withConnection { conn in
                let held = LeaderFlag()
                return try await body({
                    if held.value.withLock({ $0 }) { return true }
                    let row = try await conn.sql().raw("SELECT pg_try_advisory_lock(\(bind: key)) AS locked").first()
                    let won = try row?.decode(column: "locked", as: Bool.self) ?? false
                    held.value.withLock { $0 = won }
                    return won
                })
            }
        }
    }
}

/// Whether this replica took the leader lock.
final class LeaderFlag: Sendable {
    let value = Mutex(false)
}
