import ArgumentParser
import FelhomCore
import FelhomHub
import Foundation
import Hummingbird
import Logging

@main
struct FelhomHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom-hub", abstract: "The Felhom hub (operator's control plane).", version: FelhomVersion.current,
        subcommands: [Serve.self, Backup.self, Restore.self])
}

/// The database URL as `serve` would use it: `--database`, else the config file / environment, else the default.
func databaseURL(option: String?, config: String?) throws -> String {
    if let option { return option }
    do { return try HubConfig.load(file: config).database ?? HubConfig.Defaults.database } catch { throw ValidationError("\(error)") }
}

/// A runtime failure: printed as `felhom-hub: error: …`, exit status 1 (not the usage text and 64,
/// which are for command-line mistakes).
struct RuntimeError: Error, CustomStringConvertible {
    var description: String
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent copy of the hub's SQLite database while the hub runs.",
        discussion: """
            SQLite: VACUUM INTO a new file (mode 0600; never overwrites). Copying the database file while the hub runs is \
            not a backup: recent writes live in the -wal file. PostgreSQL: use pg_dump.
            """)

    @Option(help: "The backup file to create.") var to: String
    @Option(help: "sqlite:PATH or postgres://… (default: as `serve` would use).") var database: String?
    @Option(help: "Config file (JSON), as for `serve`.") var config: String?

    func run() async throws {
        let url = try databaseURL(option: database, config: config)
        guard url.hasPrefix("sqlite:") else {
            throw RuntimeError(
                description: "a PostgreSQL store is backed up with pg_dump (e.g. pg_dump -Fc -f hub.dump 'DATABASE_URL'), not by felhom-hub")
        }
        let path = String(url.dropFirst("sqlite:".count))
        guard FileManager.default.fileExists(atPath: path) else { throw RuntimeError(description: "no database at '\(path)'") }
        do {
            let store = try await HubStore.connect(url: url)
            do {
                try await store.backup(to: to)
                await store.close()
            } catch {
                await store.close()
                throw error
            }
            let version = try await HubStore.verifyBackup(at: to)
            print("backup written to \(to) (schema version \(version), verified)")
        } catch let error as StoreError {
            throw RuntimeError(description: error.message)
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Put a backup in place as the hub's SQLite database (stop the hub first).",
        discussion: """
            The backup is verified (integrity check, felhom-hub schema) before anything is written. The target must not \
            exist: move the current database and its -wal/-shm files away first. Start the hub afterwards: newer \
            migrations run on start.
            """)

    @Option(help: "The backup file to restore.") var from: String
    @Option(help: "sqlite:PATH to restore to (default: as `serve` would use).") var database: String?
    @Option(help: "Config file (JSON), as for `serve`.") var config: String?

    func run() async throws {
        let url = try databaseURL(option: database, config: config)
        guard url.hasPrefix("sqlite:") else {
            throw RuntimeError(description: "a PostgreSQL store is restored with pg_restore, not by felhom-hub")
        }
        do {
            let version = try await HubStore.restore(backup: from, to: String(url.dropFirst("sqlite:".count)))
            print("restored \(from) to \(url) (schema version \(version)); start the hub to use it")
        } catch let error as StoreError {
            throw RuntimeError(description: error.message)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the hub API.",
        discussion: "The operator key comes from FELHOM_HUB_OPERATOR_KEY or operator_key in the config file; it is never printed.")

    @Option(help: "Address to listen on (HOST:PORT).") var listen: String?
    @Option(help: "sqlite:PATH (default ./felhom-hub.sqlite) or postgres://USER@HOST:PORT/DB") var database: String?
    @Option(help: "Config file (JSON).") var config: String?

    func run() async throws {
        // Every setting is checked before the store is opened.
        let resolved: ResolvedHubConfig
        do {
            var cfg = try HubConfig.load(file: config)
            if let listen { cfg.listen = listen }
            if let database { cfg.database = database }
            resolved = try cfg.resolve()
        } catch {
            throw ValidationError("\(error)")
        }
        var logger = Logger(label: "felhom.hub")
        logger.logLevel = resolved.logLevel
        let built: HubApplication
        do { built = try await buildApplication(config: resolved, dependencies: .init(logger: logger)) } catch let error as StoreError {
            throw RuntimeError(description: error.message)  // e.g. the database directory does not exist
        }
        logger.info(
            "felhom-hub listening",
            metadata: [
                "address": "\(resolved.host):\(resolved.port)", "store": "\(built.hub.store.kind.rawValue)", "version": "\(FelhomVersion.current)",
                "tls": "\(resolved.tls != nil ? "hub" : resolved.settings.trustedProxies.isEmpty ? "none" : "proxy")",
            ])
        do {
            try await built.application.runService()
        } catch {
            logger.error("felhom-hub stopped", metadata: ["error": "\(error)"])
            throw error
        }
        logger.info("felhom-hub stopped")
    }
}
