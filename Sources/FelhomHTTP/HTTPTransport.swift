import Foundation

/// One HTTP request as the Proxmox client sends it.
public struct HTTPRequestSpec: Sendable {
    public var method: String
    /// Path and query, already percent-encoded (`/api2/json/nodes?x=1`).
    public var target: String
    public var headers: [(String, String)]
    public var body: Data?
    /// When set, a 2xx answer's body is handed to this sink piece by piece as it arrives (no size
    /// limit but the sink's own) and the response's `body` stays empty; other answers are
    /// buffered as usual (they are the server's small error bodies). For downloads of release
    /// assets that must not be held in memory whole.
    public var responseSink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)?
    /// A shorter bound than the transport's own for this request (a long-poll: its wait plus a
    /// margin, so a link that silently drops packets is noticed in seconds, not minutes).
    public var timeout: Duration?

    public init(
        method: String, target: String, headers: [(String, String)] = [], body: Data? = nil,
        responseSink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)? = nil
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.responseSink = responseSink
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
