import FelhomCore
import Foundation
import NIOCore

/// Runs the desired state's routes (docs/routes.md): one ``RouteProxy`` per route, reconciled like
/// everything else — a published route starts, a removed one stops (its open connections drain
/// for at most ``Settings/drain``), a changed one (ports, guest address, PROXY settings) restarts
/// without touching the others. Each route's state (`healthy|unhealthy|unknown`, reason, last
/// check) goes into the host report; a route turning unhealthy is said once (`route_unhealthy`),
/// and again when it recovers (`route_healthy`).
public actor RouteManager {
    public struct Settings: Sendable {
        /// Where the listeners bind (`::` takes IPv4 and IPv6 clients).
        public var listenHost: String
        /// Seconds between health probes.
        public var probeInterval: TimeInterval
        public var drain: Duration
        public var idleTimeout: TimeAmount
        public var maxConnections: Int
        /// The public ports routes may open (`routes.allowed_ports`); nil: any.
        public var allowedPorts: PortRanges?
        public init(
            listenHost: String = "::", probeInterval: TimeInterval = 30, drain: Duration = .seconds(10), idleTimeout: TimeAmount = .seconds(3600),
            maxConnections: Int = 1024, allowedPorts: PortRanges? = nil
        ) {
            self.allowedPorts = allowedPorts
            self.listenHost = listenHost
            self.probeInterval = probeInterval
            self.drain = drain
            self.idleTimeout = idleTimeout
            self.maxConnections = maxConnections
        }
    }

    struct Live {
        var route: DesiredState.Route
        var backendHost: String
        var proxy: RouteProxy
    }

    let settings: Settings
    var live: [String: Live] = [:]
    var statuses: [String: RouteStatus] = [:]
    var lastProbe: Date?

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// The routes as the host report shows them (sorted by id).
    public var report: [RouteStatus] {
        statuses.values.sorted { $0.id < $1.id }.map { s in
            var s = s
            s.openConnections = live[s.id]?.proxy.openConnections ?? 0
            return s
        }
    }

    /// Brings the running routes to `routes`; `addresses` maps a guest's vmid to its address
    /// (absent: not running or no address yet). Returns the events to post.
    public func apply(_ routes: [DesiredState.Route], addresses: [Int: String], now: Date = Date()) async -> [AgentEvent] {
        var events: [AgentEvent] = []
        let wanted = Dictionary(routes.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        // Removed (or changed) routes stop first, so a changed route can take its port again.
        for (id, running) in live {
            let target = wanted[id]
            let sameBackend = target.flatMap { addresses[$0.guestVMID] } == running.backendHost
            // The probe's hello is not the proxy's business: a new one does not restart the route.
            var compared = target
            compared?.probeHello = running.route.probeHello
            if compared != running.route || !sameBackend {
                await running.proxy.stop(drain: target == nil ? settings.drain : .seconds(2))
                live[id] = nil
                if target == nil { statuses[id] = nil }
            } else if let target {
                live[id]?.route = target
            }
        }
        for id in statuses.keys where wanted[id] == nil { statuses[id] = nil }
        for route in routes.sorted(by: { $0.id < $1.id }) where live[route.id] == nil {
            if let allowed = settings.allowedPorts, !allowed.contains(route.listenPort) {
                events += transition(
                    route, to: .unhealthy, reason: "listen_port_not_allowed",
                    message: "port \(route.listenPort) is outside this box's routes.allowed_ports (\(allowed)): not opened", now: now)
                continue
            }
            guard let address = addresses[route.guestVMID] else {
                events += transition(
                    route, to: .unhealthy, reason: "guest_not_running", message: "guest \(route.guestVMID) is not running or has no address yet",
                    now: now)
                continue
            }
            let proxy = RouteProxy(
                config: .init(
                    listenHost: settings.listenHost, listenPort: route.listenPort, backendHost: address, backendPort: route.targetPort,
                    proxyProtocolV2: route.proxyProtocol == .v2, uniqueID: route.proxyProtocol == .v2, idPrefix: route.id,
                    idleTimeout: settings.idleTimeout, maxConnections: settings.maxConnections))
            do {
                try await proxy.start()
                live[route.id] = Live(route: route, backendHost: address, proxy: proxy)
                if statuses[route.id]?.reason == "guest_not_running" || statuses[route.id]?.reason?.hasPrefix("listen_") == true
                    || statuses[route.id] == nil
                {
                    statuses[route.id] = RouteStatus(id: route.id, listenPort: route.listenPort, state: .unknown, checkedAt: nil)
                }
            } catch let error as RouteProxy.StartError {
                events += transition(route, to: .unhealthy, reason: error.code.rawValue, message: error.message, now: now)
            } catch {
                events += transition(route, to: .unhealthy, reason: "listen_failed", message: "\(error)", now: now)
            }
        }
        return events
    }

    /// Probes every running route's backend when the interval has passed (or `force`).
    public func probe(now: Date = Date(), force: Bool = false) async -> [AgentEvent] {
        if !force, let last = lastProbe, now.timeIntervalSince(last) < settings.probeInterval { return [] }
        lastProbe = now
        var events: [AgentEvent] = []
        for (_, running) in live.sorted(by: { $0.key < $1.key }) {
            let (state, reason, message) = await RouteProbe.probe(
                host: running.backendHost, port: running.route.targetPort, proxyProtocol: running.route.proxyProtocol,
                hello: running.route.probeHello)
            events += transition(running.route, to: state, reason: reason, message: message, now: now)
        }
        return events
    }

    /// Stops every route (the agent is stopping).
    public func stopAll() async {
        for running in live.values { await running.proxy.stop(drain: settings.drain) }
        live = [:]
    }

    /// Records a route's new state; an event when it turns unhealthy (or its reason changes) and
    /// when it recovers.
    func transition(_ route: DesiredState.Route, to state: RouteStatus.State, reason: String?, message: String?, now: Date) -> [AgentEvent] {
        let before = statuses[route.id]
        statuses[route.id] = RouteStatus(id: route.id, listenPort: route.listenPort, state: state, reason: reason, message: message, checkedAt: now)
        var data: [String: JSONValue] = [
            "route": .string(route.id), "listen_port": .int(Int64(route.listenPort)), "guest_vmid": .int(Int64(route.guestVMID)),
        ]
        if state == .unhealthy, before?.state != .unhealthy || before?.reason != reason {
            data["reason"] = .string(reason ?? "unknown")
            if let message { data["message"] = .string(String(message.prefix(300))) }
            return [AgentEvent(type: "route_unhealthy", severity: .warning, data: data)]
        }
        if state == .healthy, before?.state == .unhealthy {
            return [AgentEvent(type: "route_healthy", severity: .info, data: data)]
        }
        return []
    }
}
