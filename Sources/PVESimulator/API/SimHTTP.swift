import FelhomCore

/// One API call as the simulator sees it, after transport decoding.
public struct SimRequest: Sendable {
    public var method: String
    /// The raw path after the host, e.g. `/api2/json/nodes/pve1/lxc` (percent-encoded).
    public var path: String
    /// Query string without `?`.
    public var query: String
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, path: String, query: String = "", headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// The simulator's answer: status, reason phrase (PVE's message lives there), body.
public struct SimResponse: Sendable {
    public var status: Int
    public var reason: String
    public var contentType: String
    public var body: [UInt8]

    static func json(_ value: JSONValue, status: Int = 200, reason: String = "OK") -> SimResponse {
        SimResponse(status: status, reason: reason, contentType: "application/json;charset=UTF-8", body: Array(value.serialized()))
    }

    static func text(_ text: String, status: Int, reason: String) -> SimResponse {
        SimResponse(status: status, reason: reason, contentType: "text/plain;charset=UTF-8", body: Array(text.utf8))
    }
}

/// An API error raised by a handler; becomes PVE's status line and error body.
struct SimError: Error {
    var status: Int
    var message: String
    var errors: [String: String] = [:]

    /// `die "text\n"` in a handler: HTTP 500.
    static func die(_ message: String) -> SimError { SimError(status: 500, message: message) }

    /// `raise_param_exc`: HTTP 400 with per-parameter messages.
    static func param(_ errors: [String: String]) -> SimError {
        SimError(status: 400, message: "Parameter verification failed.", errors: errors)
    }

    /// `raise_perm_exc`: HTTP 403.
    static func perm(_ path: String, _ privs: [String]) -> SimError {
        SimError(status: 403, message: "Permission check failed (\(path), \(privs.joined(separator: "|")))")
    }

    static func permText(_ what: String) -> SimError {
        SimError(status: 403, message: "Permission check failed (\(what))")
    }
}
