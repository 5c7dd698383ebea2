import FelhomCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresKit
import PostgresNIO
import SQLKit
import SQLiteKit
import SQLiteNIO

/// The hub's one choke point for SQL: SQLite embedded (one file, zero set-up) or PostgreSQL (several
/// hub replicas), behind one query layer (sql-kit) and one set of migrations.
public final class HubStore: Sendable {
    /// Which database is behind the store.
    public enum Kind: String, Sendable { case sqlite, postgres }

    enum Backend: Sendable {
        case sqlite(SQLiteConnection, TransactionGate)
        case postgres(PostgresClient, Task<Void, Never>)
    }

    let backend: Backend
    public let kind: Kind
    let logger: Logger

    private init(backend: Backend, kind: Kind, logger: Logger) {
        self.backend = backend
        self.kind = kind
        self.logger = logger
    }

    /// Opens `sqlite:PATH` (or `sqlite::memory:`) or `postgres://USER[:PASS]@HOST[:PORT]/DB[?sslmode=disable|prefer|require]`
    /// and applies pending migrations.
    public static func open(url: String, logger: Logger = Logger(label: "felhom.hub.store")) async throws -> HubStore {
        let store: HubStore
        if url.hasPrefix("sqlite:") {
            let path = String(url.dropFirst("sqlite:".count))
            let storage: SQLiteConnection.Storage = path == ":memory:" ? .memory : .file(path: path)
            let conn: SQLiteConnection
            do { conn = try await SQLiteConnection.open(storage: storage, logger: logger) } catch {
                throw StoreError(code: .unavailable, message: "cannot open SQLite database '\(path)': \(error)")
            }
            store = HubStore(backend: .sqlite(conn, TransactionGate()), kind: .sqlite, logger: logger)
            try await store.withDB { db in
                try await db.raw("PRAGMA journal_mode=WAL").run()
                try await db.raw("PRAGMA foreign_keys=ON").run()
                try await db.raw("PRAGMA busy_timeout=5000").run()
            }
        } else if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            let config = try postgresConfiguration(url)
            let client = PostgresClient(configuration: config, backgroundLogger: logger)
            let task = Task { await client.run() }
            store = HubStore(backend: .postgres(client, task), kind: .postgres, logger: logger)
        } else {
            throw StoreError(code: .invalidURL, message: "database URL must start with sqlite: or postgres:// (got '\(redacted(url))')")
        }
        try await Migrations.apply(to: store)
        return store
    }

    /// Stops background work and closes connections.
    public func close() async {
        switch backend {
        case .sqlite(let c, _): try? await c.close()
        case .postgres(_, let task): task.cancel()
        }
    }

    /// Runs `body` with a database handle (a pooled connection on PostgreSQL).
    public func withDB<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let c, _): return try await body(c.sql())
            case .postgres(let client, _): return try await client.withConnection { try await body($0.sql()) }
            }
        } catch let e as StoreError {
            throw e
        } catch let e as HubError {
            throw e
        } catch {
            throw StoreError.wrap(error)
        }
    }

    /// Runs `body` in one transaction: everything or nothing is written.
    public func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let c, let gate):
                // One connection: transactions must not interleave.
                return try await gate.run { try await Self.inTransaction(c.sql(), begin: "BEGIN IMMEDIATE", body) }
            case .postgres(let client, _):
                return try await client.withConnection { conn in try await Self.inTransaction(conn.sql(), begin: "BEGIN", body) }
            }
        } catch let e as StoreError {
            throw e
        } catch let e as HubError {
            throw e
        } catch {
            throw StoreError.wrap(error)
        }
    }

    /// BEGIN, the body, then COMMIT — or ROLLBACK and rethrow.
    private static func inTransaction<T: Sendable>(
        _ db: any SQLDatabase, begin: String, _ body: @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        try await db.raw(SQLQueryString(begin)).run()
        do {
            let r = try await body(db)
            try await db.raw("COMMIT").run()
            return r
        } catch {
            try? await db.raw("ROLLBACK").run()
            throw error
        }
    }

    static func postgresConfiguration(_ url: String) throws -> PostgresClient.Configuration {
        guard let c = URLComponents(string: url), let host = c.host, !host.isEmpty else {
            throw StoreError(code: .invalidURL, message: "invalid PostgreSQL URL '\(redacted(url))'")
        }
        let db = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : c.path
        let mode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? (host == "127.0.0.1" || host == "localhost" ? "disable" : "require")
        let tls: PostgresClient.Configuration.TLS
        switch mode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        default: throw StoreError(code: .invalidURL, message: "sslmode must be disable, prefer or require")
        }
        var config = PostgresClient.Configuration(
            host: host, port: c.port ?? 5432, username: c.user?.removingPercentEncoding ?? "postgres",
            password: c.password?.removingPercentEncoding, database: db.isEmpty ? nil : db, tls: tls)
        config.options.maximumConnections = 16
        return config
    }

    /// The URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard var c = URLComponents(string: url), c.password != nil else { return url }
        c.password = "****"
        return c.string ?? "postgres://…"
    }
}

/// Serializes SQLite transactions on the single connection.
actor TransactionGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        while busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            busy = false
            if !waiters.isEmpty { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}

/// A database failure. The message never contains credentials.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case invalidURL, unavailable, conflict, query }
    public var code: Code
    public var message: String
    public var description: String { "store \(code.rawValue): \(message)" }

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    static func wrap(_ error: Error) -> StoreError {
        let text = String(describing: error)
        if text.contains("UNIQUE constraint") || text.contains("duplicate key") || text.contains("23505") {
            return StoreError(code: .conflict, message: "already exists")
        }
        if let pg = error as? PSQLError {
            return StoreError(code: .query, message: pg.serverInfo?[.message] ?? "database error (\(pg.code))")
        }
        return StoreError(code: .query, message: text)
    }
}
