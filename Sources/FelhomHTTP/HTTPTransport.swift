import Foundation

/// One HTTP request as the Proxmox client sends it.
public struct HTTPRequestSpec: Sendable {
    public var method: String
    /// Path and query, already percent-encoded (`/api2/json/nodes?x=1`).
    public var target: String
    public var headers: [(String, String)]
    public var body: Data?

    public init(method: String, target: String, headers: [(String, String)] = [], body: Data? = nil) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

/// One HTTP answer, with the reason phrase kept: Proxmox puts its error message there.
public struct HTTPResponseSpec: Sendable {
    public var status: Int
    public var reason: String
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, reason: String, headers: [(String, String)] = [], body: Data) {
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
    }
}

/// Sends HTTP requests to one server. The client's only I/O edge, so tests can swap it.
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPRequestSpec) async throws -> HTTPResponseSpec
}
