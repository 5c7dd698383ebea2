import FelhomCore
import Foundation
import SQLKit

extension HubStore {
    /// Writes a consistent copy of a SQLite store to `path` while the hub may be running
    /// (`VACUUM INTO`: one read transaction, so the copy holds what the WAL holds too — copying the
    /// file would not). The copy is written next to `path` and renamed into place, mode 0600; an
    /// existing `path` is never overwritten. PostgreSQL: use `pg_dump` (refused here, saying so).
    public func backup(to path: String) async throws {
        guard kind == .sqlite else {
            throw StoreError(
                code: .unavailable,
                message: "a PostgreSQL store is backed up with pg_dump (e.g. pg_dump -Fc -f hub.dump DATABASE_URL), not by felhom-hub")
        }
        guard !FileManager.default.fileExists(atPath: path) else {
            throw StoreError(code: .conflict, message: "'\(path)' already exists; choose a new file (a backup never overwrites)")
        }
        let partial = path + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.removeItem(atPath: partial)
        do {
            try await withDB { db in try await StoreMaintenance.vacuum(into: partial, in: db) }
            try Self.finish(partial, as: path)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// Checks that `path` is a readable hub database (SQLite integrity check, migrations table) and
    /// returns its schema version.
    public static func verifyBackup(at path: String) async throws -> Int {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(code: .unavailable, message: "'\(path)' does not exist")
        }
        let store = try await HubStore.connect(url: "sqlite:" + path)
        do {
            let version = try await store.withDB { db in try await StoreMaintenance.verify(in: db) }
            await store.close()
            return version
        } catch {
            await store.close()
            throw error
        }
    }

    /// Puts a verified backup in place as the SQLite database at `target` (the hub must be stopped).
    /// `target` must not exist — move the old database away first, so nothing is lost by a mistake.
    public static func restore(backup path: String, to target: String) async throws -> Int {
        let version = try await verifyBackup(at: path)
        for file in [target, target + "-wal", target + "-shm"] where FileManager.default.fileExists(atPath: file) {
            throw StoreError(code: .conflict, message: "'\(file)' exists; move the current database (and its -wal/-shm files) away first")
        }
        let partial = target + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.removeItem(atPath: partial)
        do {
            try FileManager.default.copyItem(atPath: path, toPath: partial)
            try finish(partial, as: target)
        } catch let error as StoreError {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw StoreError(code: .unavailable, message: "cannot copy '\(path)' to '\(target)': \(error.localizedDescription)")
        }
        return version
    }

    /// fsync the finished file, chmod 0600, rename into place, fsync the directory.
    static func finish(_ partial: String, as path: String) throws {
        _ = chmod(partial, 0o600)
        let fd = Foundation.open(partial, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(code: .unavailable, message: "cannot open '\(partial)': \(String(cString: strerror(errno)))") }
        let synced = fsync(fd) == 0
        Foundation.close(fd)
        guard synced else { throw StoreError(code: .unavailable, message: "cannot fsync '\(partial)'") }
        guard rename(partial, path) == 0 else {
            throw StoreError(code: .unavailable, message: "cannot rename '\(partial)' to '\(path)': \(String(cString: strerror(errno)))")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let dirFD = Foundation.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            Foundation.close(dirFD)
        }
    }
}

/// SQL of store maintenance (backup, verification).
enum StoreMaintenance {
    static func vacuum(into path: String, in db: any SQLDatabase) async throws {
        // VACUUM INTO takes a string literal, not a bound parameter: quote it.
        let literal = "'" + path.replacingOccurrences(of: "'", with: "''") + "'"
        try await db.raw(SQLQueryString("VACUUM INTO " + literal)).run()
    }

    /// `PRAGMA integrity_check` is `ok` and `schema_migrations` answers: returns the highest version.
    static func verify(in db: any SQLDatabase) async throws -> Int {
        let check = try await db.raw("PRAGMA integrity_check").all().first.flatMap { try? $0.decode(column: "integrity_check", as: String.self) }
        guard check == "ok" else { throw StoreError(code: .query, message: "the file fails SQLite's integrity check (\(check ?? "no answer"))") }
        guard let row = try? await db.raw("SELECT MAX(version) AS v FROM schema_migrations").first(),
            let version = try? row.decode(column: "v", as: Int?.self) ?? nil
        else {
            throw StoreError(code: .query, message: "the file is not a felhom-hub database (no schema_migrations table)")
        }
        return version
    }
}
