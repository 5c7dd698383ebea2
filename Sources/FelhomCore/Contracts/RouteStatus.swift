import Foundation

/// One route as the agent runs it (the host report's `routes`; docs/routes.md): whether its
/// listener is up and its backend answers as the route expects.
public struct RouteStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable, CaseIterable {
        case healthy, unhealthy, unknown
    }
    public var id: String
    public var listenPort: Int
    public var state: State
    /// Why it is unhealthy: `listen_port_in_use`, `listen_failed`, `guest_not_running`,
    /// `backend_unreachable`, `backend_does_not_expect_proxy_protocol`, `backend_closed`.
    public var reason: String?
    /// Details for a person (never secrets).
    public var message: String?
    public var checkedAt: Date?
    public var openConnections: Int

    public init(
        id: String, listenPort: Int, state: State, reason: String? = nil, message: String? = nil, checkedAt: Date? = nil, openConnections: Int = 0
    ) {
        self.id = id
        self.listenPort = listenPort
        self.state = state
        self.reason = reason
        self.message = message
        self.checkedAt = checkedAt
        self.openConnections = openConnections
    }

    enum CodingKeys: String, CodingKey {
        case id, state, reason, message
        case listenPort = "listen_port"
        case checkedAt = "checked_at"
        case openConnections = "open_connections"
    }
}
