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
import Synchronization

/// The hub's one choke point for SQL: SQLite embedded (one file, zero set-up) or PostgreSQL (several
/// hub replicas), behind one query layer (sql-kit) and one set of migrations.
public final class HubStore: Sendable {
    /// Which database is behind the store.
    public enum Kind: String, Sendable { case sqlite, postgres }

    enum Backend: Sendable {
        case sqlite(SQLiteConnection, TransactionGate)
        case postgres(PostgresClient)
    }

    let backend: Backend
    public let kind: Kind
    let logger: Logger
    /// The PostgreSQL client's run loop when ``open(url:logger:)`` started it itself (not as a service).
    private let ownRunLoop = Mutex<Task<Void, Never>?>(nil)
    /// Opens once migrations are applied (``migrate()``): background work waits on it.
    let readiness = Readiness()

    private init(backend: Backend, kind: Kind, logger: Logger) {
        self.backend = backend
        self.kind = kind
        self.logger = logger
    }

    /// Opens `sqlite:PATH` (or `sqlite::memory:`) or `postgres://USER[:PASS]@HOST[:PORT]/DB[?sslmode=disable|prefer|require]`,
    /// runs the PostgreSQL client in a task of its own and applies pending migrations: a ready store
    /// for tools and tests. A served hub uses ``connect(url:logger:)`` with ``service`` instead.
    public static func open(url: String, logger: Logger = Logger(label: "felhom.hub.store")) async throws -> HubStore {
        let store = try await connect(url: url, logger: logger)
        if case .postgres(let client) = store.backend {
            store.ownRunLoop.withLock { $0 = Task { await client.run() } }
            // Let the run loop start before the first lease (postgres-nio warns otherwise; it
            // would still wait for it). Best effort: nothing depends on it.
            try? await Task.sleep(for: .milliseconds(5))
        }
        do { try await store.migrate() } catch {
            await store.close()
            throw error
        }
        return store
    }

    /// Opens the database without applying migrations; on PostgreSQL nothing connects until
    /// ``service`` runs (it is the client's run loop). Then ``migrate()``.
    public static func connect(url: String, logger: Logger = Logger(label: "felhom.hub.store")) async throws -> HubStore {
        let store: HubStore
        if url.hasPrefix("sqlite:") {
            let path = String(url.dropFirst("sqlite:".count))
            if path != ":memory:" { try prepareSQLiteFile(path) }
            let storage: SQLiteConnection.Storage = path == ":memory:" ? .memory : .file(path: path)
            let conn: SQLiteConnection
            do { conn = try await SQLiteConnection.open(storage: storage, logger: logger) } catch {
                throw StoreError(code: .unavailable, message: "cannot open SQLite database '\(path)': \(error)")
            }
            store = HubStore(backend: .sqlite(conn, TransactionGate()), kind: .sqlite, logger: logger)
            do {
                try await store.withDB { db in
                    try await db.raw("PRAGMA journal_mode=WAL").run()
                    try await db.raw("PRAGMA foreign_keys=ON").run()
                    try await db.raw("PRAGMA busy_timeout=5000").run()
                }
            } catch let error as StoreError {
                // Not a database (or unreadable): close the connection on this way out too.
                await store.close()
                throw StoreError(code: .unavailable, message: "'\(path)' is not a usable SQLite database: \(error.message)")
            }
        } else if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            let config = try postgresConfiguration(url)
            let client = PostgresClient(configuration: config, backgroundLogger: logger)
            store = HubStore(backend: .postgres(client), kind: .postgres, logger: logger)
        } else {
            throw StoreError(code: .invalidURL, message: "database URL must start with sqlite: or postgres:// (got '\(redacted(url))')")
        }
        return store
    }

    /// Applies pending migrations (replicas take turns), then marks the store ready.
    public func migrate() async throws {
        try await Migrations.apply(to: self)
        readiness.open()
    }

    /// Waits until ``migrate()`` has finished (background services start before the server's
    /// `beforeServerStarts` step has migrated).
    public func ready() async throws {
        try await readiness.wait()
    }

    /// The database holds key hashes, escrow material and customer data: its files are 0600 (SQLite
    /// creates `-wal` and `-shm` with the database file's mode). A missing directory is named.
    static func prepareSQLiteFile(_ path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue {
            throw StoreError(
                code: .unavailable, message: "cannot open SQLite database '\(path)': the directory '\(dir)' does not exist (create it, mode 0700)")
        }
        if !FileManager.default.fileExists(atPath: path) {
            let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw StoreError(code: .unavailable, message: "cannot create SQLite database '\(path)': \(String(cString: strerror(errno)))")
            }
            Foundation.close(fd)
        }
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            _ = chmod(file, 0o600)
        }
    }

    /// Stops background work and closes connections.
    public func close() async {
        switch backend {
        case .sqlite(let connection, _): try? await connection.close()
        case .postgres: ownRunLoop.withLock { $0?.cancel() }
        }
    }

    /// Runs `body` with a database handle (a pooled connection on PostgreSQL).
    public func withDB<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let c, let gate):
                // Through the gate: on the one connection a statement issued while another task's
                // transaction is open would run inside it (and vanish with its rollback).
                return try await gate.run { try await body(c.sql()) }
            case .postgres(let client): return try await client.withConnection { try await body($0.sql()) }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as HubError {
            throw error
        } catch {
            throw logged(StoreError.wrap(error))
        }
    }

    /// Runs a PostgreSQL prepared statement: prepared once per pooled connection, then only bound
    /// and executed (no parse and plan per call). For the hottest statements; PostgreSQL only.
    func executePrepared<Statement: PostgresPreparedStatement>(_ statement: Statement) async throws -> [Statement.Row] {
        guard case .postgres(let client) = backend else {
            throw StoreError(code: .unavailable, message: "prepared statements are used on PostgreSQL only")
        }
        do {
            var rows: [Statement.Row] = []
            for try await row in try await client.execute(statement) { rows.append(row) }
            return rows
        } catch let error as StoreError {
            throw error
        } catch {
            throw logged(StoreError.wrap(error))
        }
    }

    /// Logs a database failure (a conflict is the caller's business: debug) with the store's kind and
    /// the error's code; values bound to statements are never logged.
    private func logged(_ error: StoreError) -> StoreError {
        let metadata: Logger.Metadata = ["store": "\(kind.rawValue)", "code": "\(error.code.rawValue)", "error": "\(error.message.prefix(300))"]
        if error.code == .conflict {
            logger.debug("store conflict", metadata: metadata)
        } else {
            logger.error("store operation failed", metadata: metadata)
        }
        return error
    }

    /// Runs `body` in one transaction: everything or nothing is written.
    public func transaction<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        do {
            switch backend {
            case .sqlite(let c, let gate):
                // One connection: transactions must not interleave. A transaction opened inside
                // another (same task, gate already held) becomes a savepoint of it.
                if let depth = gate.heldDepth() {
                    return try await gate.run { try await Self.inSavepoint(c.sql(), name: "felhom_sp\(depth)", body) }
                }
                return try await gate.run { try await Self.inTransaction(c.sql(), begin: "BEGIN IMMEDIATE", body) }
            case .postgres(let client):
                return try await client.withConnection { conn in try await Self.inTransaction(conn.sql(), begin: "BEGIN", body) }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as HubError {
            throw error
        } catch {
            throw logged(StoreError.wrap(error))
        }
    }

    /// BEGIN, the body, then COMMIT — or ROLLBACK and rethrow.
    private static func inTransaction<T: Sendable>(
        _ db: any SQLDatabase, begin: String, _ body: @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        try await db.raw(SQLQueryString(begin)).run()
        do {
            let result = try await body(db)
            try await db.raw("COMMIT").run()
            return result
        } catch {
            try? await db.raw("ROLLBACK").run()
            throw error
        }
    }

    /// SAVEPOINT, the body, then RELEASE — or ROLLBACK TO and rethrow.
    private static func inSavepoint<T: Sendable>(
        _ db: any SQLDatabase, name: String, _ body: @Sendable (any SQLDatabase) async throws -> T
    ) async throws -> T {
        try await db.raw(SQLQueryString("SAVEPOINT " + name)).run()
        do {
            let result = try await body(db)
            try await db.raw(SQLQueryString("RELEASE " + name)).run()
            return result
        } catch {
            try? await db.raw(SQLQueryString("ROLLBACK TO " + name)).run()
            try? await db.raw(SQLQueryString("RELEASE " + name)).run()
            throw error
        }
    }

    static func postgresConfiguration(_ url: String) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty else {
            throw StoreError(code: .invalidURL, message: "invalid PostgreSQL URL '\(redacted(url))'")
        }
        let db = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let mode =
            components.queryItems?.first { $0.name == "sslmode" }?.value ?? (host == "127.0.0.1" || host == "localhost" ? "disable" : "require")
        let tls: PostgresClient.Configuration.TLS
        switch mode {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require": tls = .require(.makeClientConfiguration())
        default: throw StoreError(code: .invalidURL, message: "sslmode must be disable, prefer or require")
        }
        var config = PostgresClient.Configuration(
            host: host, port: components.port ?? 5432, username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding, database: db.isEmpty ? nil : db, tls: tls)
        config.options.maximumConnections = 16
        return config
    }

    /// The URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "****"
        return components.string ?? "postgres://…"
    }
}

extension HubStore {
    /// A trivial query: the database answers (health checks).
    public func ping() async throws {
        try await withDB { db in try await db.raw("SELECT 1").run() }
    }
}

/// The one door to SQLite's single connection: every statement and every transaction passes
/// through it, one holder at a time, in arrival order.
///
/// Without it a statement issued while another task's transaction is open would run inside that
/// transaction: rolled back with it after its caller was told it was stored, and reads would see
/// uncommitted rows. The holder's task (and the tasks it awaits) may re-enter: a store call made
/// from inside a transaction body joins that transaction instead of deadlocking.
final class TransactionGate: Sendable {
    private struct State {
        var holder: UInt64? = nil
        var nextToken: UInt64 = 1
        var depth = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    /// The hold this task is running under, if any (inherited by child tasks).
    @TaskLocal private static var hold: UInt64?
    private let state = Mutex(State())

    init() {}

    /// The nesting depth when this task already holds the gate, nil otherwise.
    func heldDepth() -> Int? {
        guard let mine = Self.hold else { return nil }
        return state.withLock { $0.holder == mine ? $0.depth : nil }
    }

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if let mine = Self.hold,
            state.withLock({ s in
                guard s.holder == mine else { return false }
                s.depth += 1
                return true
            })
        {
            defer { state.withLock { $0.depth -= 1 } }
            return try await body()
        }
        let token = await acquire()
        defer { release() }
        return try await Self.$hold.withValue(token) { try await body() }
    }

    private func acquire() async -> UInt64 {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let free = state.withLock { s -> Bool in
                guard s.holder == nil else {
                    s.waiters.append(c)
                    return false
                }
                s.holder = s.nextToken
                s.nextToken += 1
                return true
            }
            if free { c.resume() }
        }
        return state.withLock { $0.holder ?? 0 }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.depth = 0
            guard !s.waiters.isEmpty else {
                s.holder = nil
                return nil
            }
            // Hand over directly: the next waiter holds a fresh token.
            s.holder = s.nextToken
            s.nextToken += 1
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// A database failure. The message never contains credentials.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case invalidURL, unavailable, conflict, query }
    public var code: Code
    public var message: String
    /// PostgreSQL's SQLSTATE when the server answered with an error (the statement was rolled
    /// back); `nil` when it did not answer (a lost connection: whether a commit happened is unknown).
    public var sqlState: String?
    public var description: String { "store \(code.rawValue): \(message)" }

    public init(code: Code, message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    /// The server refused the statement, so nothing of it was stored and sending it again cannot
    /// store anything twice (not a connection or shutdown error: SQLSTATE classes 08 and 57).
    var refusedByServer: Bool {
        guard let sqlState else { return false }
        return !sqlState.hasPrefix("08") && !sqlState.hasPrefix("57")
    }

    /// Classifies a driver error by its SQL error code (never by its text: postgres-nio's
    /// descriptions are deliberately generic): a unique violation is a conflict on both stores.
    static func wrap(_ error: Error) -> StoreError {
        if isUniqueViolation(error) { return StoreError(code: .conflict, message: "already exists") }
        if let pg = error as? PSQLError {
            return StoreError(code: .query, message: pg.serverInfo?[.message] ?? "database error (\(pg.code))", sqlState: pg.serverInfo?[.sqlState])
        }
        return StoreError(code: .query, message: String(describing: error))
    }

    /// SQLSTATE 23505 on PostgreSQL; SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY / _ROWID on SQLite
    /// (sqlite-nio opens connections with extended result codes).
    static func isUniqueViolation(_ error: Error) -> Bool {
        if let pg = error as? PSQLError { return pg.serverInfo?[.sqlState] == "23505" }
        if let lite = error as? SQLiteError {
            switch lite.reason {
            case .constraintUniqueFailed, .constraintPrimaryKeyFailed, .constraintUniqueRowIDFailed: return true
            default: return false
            }
        }
        return false
    }
}

extension HubStore {
    /// PostgreSQL only: creates an empty database (tests and `felhom demo` give each run its own).
    /// The name must be lower-case letters, digits and underscores.
    public func createDatabase(named name: String) async throws {
        guard kind == .postgres else { throw StoreError(code: .unavailable, message: "createDatabase needs PostgreSQL") }
        guard Pattern.whole(name, "[a-z_][a-z0-9_]{0,62}") else {
            throw StoreError(code: .invalidURL, message: "database name must be lower-case letters, digits and underscores")
        }
        try await withDB { db in try await db.raw("CREATE DATABASE \(unsafeRaw: name)").run() }
    }
}
