import FelhomCore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import ServiceLifecycle

/// What ``buildApplication(config:dependencies:)`` takes from outside the configuration: tests
/// inject a clock, a store they made, a mail transport, or turn the checkers off.
public struct HubDependencies: Sendable {
    /// A store opened by the caller (it stays the caller's to close); `nil` connects to the
    /// configured database, migrates it before the server starts and closes it on shutdown.
    public var store: HubStore?
    public var clock: any WallClock = SystemWallClock()
    /// Replaces the configured mail transport.
    public var mailer: Mailer?
    /// Run the liveness/backup/retention checkers and the mail outbox (the hub does; most API tests do not).
    public var runsCheckers = true
    /// Called with the bound port once the server listens (port 0 picks a free one).
    public var onServerRunning: (@Sendable (Int) async -> Void)?
    public var logger: Logger?

    public init(
        store: HubStore? = nil, clock: any WallClock = SystemWallClock(), mailer: Mailer? = nil, runsCheckers: Bool = true,
        onServerRunning: (@Sendable (Int) async -> Void)? = nil, logger: Logger? = nil
    ) {
        self.store = store
        self.clock = clock
        self.mailer = mailer
        self.runsCheckers = runsCheckers
        self.onServerRunning = onServerRunning
        self.logger = logger
    }
}

/// The hub, wired: its core (``Hub``) and the Hummingbird application serving it.
public struct HubApplication: Sendable {
    public let hub: Hub
    public let application: Application<RouterResponder<HubRequestContext>>
}

/// The one place that wires the hub — `felhom-hub serve`, `felhom demo` and the tests all call it.
///
/// Services, in start order (stopped in reverse): the store (PostgreSQL's client run loop), the
/// checkers, the HTTP server. Migrations run in the server's `beforeServerStarts` step; the
/// checkers wait for them.
public func buildApplication(config: ResolvedHubConfig, dependencies: HubDependencies = HubDependencies()) async throws -> HubApplication {
    var logger = dependencies.logger ?? Logger(label: "felhom.hub")
    logger.logLevel = config.logLevel
    let ownsStore = dependencies.store == nil
    let store: HubStore
    if let given = dependencies.store {
        store = given
    } else {
        store = try await HubStore.connect(url: config.databaseURL, logger: logger)
    }
    var hub = Hub(
        store: store, operatorKey: config.operatorKey, settings: config.settings, clock: dependencies.clock, notifications: config.notifications)
    hub.geo = config.geo
    hub.logger = logger
    let mailer = dependencies.mailer ?? config.mailer
    if mailer == nil, dependencies.runsCheckers {
        logger.warning("no mail transport configured (smtp_host or mail_api_url): notifications stay queued in the outbox")
    }
    var services: [any Service] = []
    if ownsStore { services.append(store.service) }
    if dependencies.runsCheckers { services.append(CheckerService(hub: hub, settings: config.checks, logger: logger, mailer: mailer)) }
    let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(Int64(config.idleTimeoutSeconds))))
    let onRunning = dependencies.onServerRunning
    var app = Application(
        router: HubAPI.router(hub: hub),
        server: try config.tls.map { try HTTPServerBuilder.tls(http1, tlsConfiguration: $0) } ?? http1,
        configuration: .init(
            address: .hostname(config.host, port: config.port), serverName: "felhom-hub",
            availableConnectionsDelegate: MaximumAvailableConnections(config.maxConnections)),
        services: services,
        onServerRunning: { channel in await onRunning?(channel.localAddress?.port ?? 0) },
        logger: logger)
    if ownsStore {
        let logger = logger
        app.beforeServerStarts {
            try await store.migrate()
            logger.info("store ready", metadata: ["store": "\(store.kind.rawValue)"])
        }
    }
    return HubApplication(hub: hub, application: app)
}
