import ArgumentParser
import FelhomCore
import FelhomHub
import Foundation
import Hummingbird
import Logging

@main
struct FelhomHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "felhom-hub", abstract: "The Felhom hub (operator's control plane).", subcommands: [Serve.self])
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
        do { built = try await buildApplication(config: resolved, dependencies: .init(logger: logger)) } catch {
            throw ValidationError("\(error)")
        }
        logger.info(
            "felhom-hub listening",
            metadata: [
                "address": "\(resolved.host):\(resolved.port)", "store": "\(built.hub.store.kind.rawValue)",
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
