import FelhomCore
import FelhomHub
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The stores every hub suite runs on: SQLite always, PostgreSQL when `FELHOM_TEST_POSTGRES_URL`
/// is set (scripts/test starts one). Each test gets its own fresh database.
public enum TestStores {
    public static let postgresURL = ProcessInfo.processInfo.environment["FELHOM_TEST_POSTGRES_URL"]

    public static var kinds: [HubStore.Kind] {
        if postgresURL == nil {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                // CI must never silently skip: scripts/test sets the URL.
                return [.sqlite, .postgres]
            }
            print("note: FELHOM_TEST_POSTGRES_URL not set: hub suites run on SQLite only (scripts/test starts PostgreSQL)")
            return [.sqlite]
        }
        return [.sqlite, .postgres]
    }

    /// A fresh, migrated store: a new SQLite file, or a new PostgreSQL database.
    public static func open(_ kind: HubStore.Kind) async throws -> HubStore {
        switch kind {
        case .sqlite:
            let path = NSTemporaryDirectory() + "felhom-hub-\(UUID().uuidString).sqlite"
            return try await HubStore.open(url: "sqlite:\(path)")
        case .postgres:
            guard let base = postgresURL, var components = URLComponents(string: base) else {
                throw StoreError(code: .invalidURL, message: "FELHOM_TEST_POSTGRES_URL is not set")
            }
            let admin = try await HubStore.open(url: base)
            let name = "felhom_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
            do { try await admin.createDatabase(named: name) } catch {
                await admin.close()
                throw error
            }
            await admin.close()
            components.path = "/" + name
            return try await HubStore.open(url: components.string ?? base)
        }
    }
}

/// The operator key of every test hub.
public let operatorKey = "test-operator-key-0123456789abcdef"

/// The configuration tests build hubs from (loopback, a free port, the test operator key).
public func testHubConfig(adjust: (inout HubConfig) -> Void = { _ in }) throws -> ResolvedHubConfig {
    var config = HubConfig()
    config.listen = "127.0.0.1:0"
    config.operatorKey = Secret(operatorKey)
    adjust(&config)
    return try config.resolve()
}

/// A hub on a fresh store, built by ``buildApplication(config:dependencies:)`` (checkers off), for
/// router tests (`h.app.test(.router)`).
public struct HubHarness: Sendable {
    public let hub: Hub
    public let app: Application<RouterResponder<HubRequestContext>>

    public init(hub: Hub, app: Application<RouterResponder<HubRequestContext>>) {
        self.hub = hub
        self.app = app
    }

    public static func make(
        _ kind: HubStore.Kind, clock: any WallClock = SystemWallClock(), settings: Hub.Settings? = nil
    ) async throws -> HubHarness {
        let store = try await TestStores.open(kind)
        var config = try testHubConfig()
        if let settings { config.settings = settings }
        let built = try await buildApplication(config: config, dependencies: .init(store: store, clock: clock, runsCheckers: false))
        return HubHarness(hub: built.hub, app: built.application)
    }
}

/// Runs `body` with a fresh hub harness; its store is closed however `body` ends.
public func withHub<T>(
    _ kind: HubStore.Kind, clock: any WallClock = SystemWallClock(), settings: Hub.Settings? = nil,
    _ body: (HubHarness) async throws -> T
) async throws -> T {
    let harness = try await HubHarness.make(kind, clock: clock, settings: settings)
    do {
        let result = try await body(harness)
        await harness.hub.store.close()
        return result
    } catch {
        await harness.hub.store.close()
        throw error
    }
}

/// A hub serving HTTP on a loopback port with its own SQLite store (what agents and the CLI talk to).
public struct RunningHub: Sendable {
    public let hub: Hub
    public let url: String
}

/// Runs `body` with a hub listening on `127.0.0.1` (a free port, checkers off, SQLite in a
/// temporary file); the server and the store stop however `body` ends.
/// `logger`: the hub's logger (default: critical only; tests that read what the hub logs pass a
/// capturing one at trace level).
public func withRunningHub<T: Sendable>(
    adjust: (inout HubConfig) -> Void = { _ in }, logger: Logger? = nil, _ body: (RunningHub) async throws -> T
) async throws -> T {
    let port = Mutex<Int?>(nil)
    var quiet = Logger(label: "felhom.test.hub")
    quiet.logLevel = .critical
    if let logger { quiet = logger }
    let config = try testHubConfig {
        $0.database = "sqlite:" + NSTemporaryDirectory() + "felhom-test-hub-\(UUID().uuidString).sqlite"
        $0.logLevel = logger == nil ? "critical" : "trace"
        adjust(&$0)
    }
    let built = try await buildApplication(
        config: config, dependencies: .init(runsCheckers: false, onServerRunning: { bound in port.withLock { $0 = bound } }, logger: quiet))
    let group = ServiceGroup(services: [built.application], gracefulShutdownSignals: [], logger: quiet)
    let running = Task { try await group.run() }
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await running.value
    }
    do {
        guard let bound = try await boundPort(port) else {
            throw StoreError(code: .unavailable, message: "the test hub did not start listening within \(startDeadline)")
        }
        let result = try await body(RunningHub(hub: built.hub, url: "http://127.0.0.1:\(bound)"))
        await stop()
        return result
    } catch {
        await stop()
        throw error
    }
}

/// One answer of the router under test.
public struct Reply: Sendable {
    public var status: HTTPResponse.Status
    public var body: Data
    public var json: JSONValue? { try? JSONValue.parse(body) }
    /// The body as text (for messages and "is not in the answer" checks).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public init(status: HTTPResponse.Status, body: Data) {
        self.status = status
        self.body = body
    }
}

extension TestClientProtocol {
    /// Calls the hub with an optional bearer key and a JSON body.
    public func call(_ method: HTTPRequest.Method, _ uri: String, key: String?, body: String? = nil) async throws -> Reply {
        var headers = HTTPFields()
        if let key { headers[.authorization] = "Bearer \(key)" }
        headers[.contentType] = "application/json"
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { response in
            Reply(status: response.status, body: Data(response.body.readableBytesView))
        }
    }
}

/// How long a test server may take to listen. Timed by the clock, not by a count of short sleeps:
/// with every suite starting at once on two cores, a sleep of 10 ms can take far longer, and 500 of
/// them ran out while hubs were still starting (about 25 s into a loaded run).
let startDeadline: Duration = .seconds(120)

/// The port the server reported once it listens, or nil after ``startDeadline``.
func boundPort(_ port: borrowing Mutex<Int?>) async throws -> Int? {
    let deadline = ContinuousClock.now + startDeadline
    while ContinuousClock.now < deadline {
        if let bound = port.withLock({ $0 }) { return bound }
        try await Task.sleep(for: .milliseconds(10))
    }
    return port.withLock { $0 }
}

/// Runs a server (`make` builds it, given a callback that receives the bound port) on a free
/// loopback port for `body`, then shuts it down however `body` ends.
public func withServedApplication<T: Sendable>(
    _ make: (@escaping @Sendable (Int?) async -> Void) throws -> some Service, body: (Int) async throws -> T
) async throws -> T {
    var quiet = Logger(label: "felhom.test.server")
    quiet.logLevel = .critical
    let port = Mutex<Int?>(nil)
    let app = try make { bound in port.withLock { $0 = bound } }
    let group = ServiceGroup(services: [app], gracefulShutdownSignals: [], logger: quiet)
    let running = Task { try await group.run() }
    defer { running.cancel() }
    guard let bound = try await boundPort(port) else {
        throw StoreError(code: .unavailable, message: "the test server did not start listening within \(startDeadline)")
    }
    do {
        let result = try await body(bound)
        await group.triggerGracefulShutdown()
        return result
    } catch {
        await group.triggerGracefulShutdown()
        throw error
    }
}
