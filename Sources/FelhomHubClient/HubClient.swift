import FelhomCore
import FelhomHTTP
import Foundation

/// A failure talking to the hub: below HTTP (`transport`, `tls`, `timeout`), or the hub's own
/// answer (`http`, with its status, error code, message and JSON path).
public struct HubClientError: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var status: Int?
    /// For a 400: the JSON path the hub named.
    public var path: String?

    public init(code: String, message: String, status: Int? = nil, path: String? = nil) {
        self.code = code
        self.message = message
        self.status = status
        self.path = path
    }

    public var description: String {
        var s = status.map { "hub answered \($0) \(code): \(message)" } ?? "\(code): \(message)"
        if let path { s += " (at \(path))" }
        return s
    }
}

/// The hub's JSON API as used by agents, controllers and the operator CLI. Every call sends
/// `Authorization: Bearer KEY`; the key never appears in an error.
public struct HubClient: Sendable {
    public let baseURL: URL
    let key: Secret
    let transport: any HTTPTransport
    let basePath: String
    /// Send no `Authorization` header (enrollment).
    var anonymous = false

    /// `https://` with a pin, CA file or system trust; plain `http://` only to a loopback hub.
    public init(url text: String, key: Secret, trust: TLSTrust = .systemDefault, timeout: Duration = .seconds(90)) throws {
        let endpoint: HTTPEndpoint
        do { endpoint = try HTTPEndpoint(url: text, setting: "hub URL") } catch {
            throw HubClientError(code: "invalid_argument", message: error.message)
        }
        guard !key.isEmpty else { throw HubClientError(code: "invalid_argument", message: "the hub API key is empty") }
        self.init(baseURL: URL(string: text)!, key: key, transport: endpoint.transport(trust: trust, timeout: timeout))
    }

    /// With any transport (tests).
    public init(baseURL: URL, key: Secret, transport: any HTTPTransport) {
        self.baseURL = baseURL
        self.key = key
        self.transport = transport
        var p = baseURL.path
        while p.hasSuffix("/") { p.removeLast() }
        basePath = p
    }

    /// One call; a non-2xx answer becomes a ``HubClientError`` carrying the hub's message.
    public func call(_ method: String, _ path: String, query: [(String, String)] = [], body: Data? = nil) async throws -> Data {
        var target = basePath + path
        if !query.isEmpty {
            target += "?" + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? "")" }.joined(separator: "&")
        }
        var headers = anonymous ? [] : [("Authorization", "Bearer \(key.reveal())")]
        if body != nil { headers.append(("Content-Type", "application/json")) }
        let response: HTTPResponseSpec
        do {
            response = try await transport.send(HTTPRequestSpec(method: method, target: target, headers: headers, body: body))
        } catch let e as HTTPClientError {
            throw HubClientError(code: e.code.raw, message: e.message)
        }
        guard (200..<300).contains(response.status) else {
            let err = (try? JSONValue.parse(response.body))?["error"]
            throw HubClientError(
                code: err?["code"]?.stringValue ?? "http", message: err?["message"]?.stringValue ?? "HTTP \(response.status) \(response.reason)",
                status: response.status, path: err?["path"]?.stringValue)
        }
        return response.body
    }

    public func json(_ method: String, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil) async throws -> JSONValue {
        let data = try await call(method, path, query: query, body: body?.serialized())
        do { return try JSONValue.parse(data) } catch {
            throw HubClientError(code: "decoding", message: "the hub's answer to \(method) \(path) is not JSON")
        }
    }

    // MARK: - Agent

    /// Trades a one-time enrollment token for this host's key. The token is the only credential.
    public static func enroll(url: String, token: Secret, trust: TLSTrust = .systemDefault) async throws -> (hostID: String, key: Secret) {
        // No bearer key: the token in the body is the credential.
        var c = try HubClient(url: url, key: token, trust: trust, timeout: .seconds(30))
        c.anonymous = true
        let j = try await c.json("POST", "/api/v1/enroll", body: .object(["token": .string(token.reveal())]))
        guard let id = j["host_id"]?.stringValue, let key = j["api_key"]?.stringValue else {
            throw HubClientError(code: "decoding", message: "enrollment answer without host_id or api_key")
        }
        return (id, Secret(key))
    }

    /// Posts a host report; returns the control envelope.
    public func postHostReport(_ report: HostReport) async throws -> ControlEnvelope {
        let data = try await call("POST", "/api/v1/host-report", body: report.encoded())
        return try decodeContract(data, "host-report")
    }

    /// Long-polls for a generation past `after` (bounded by `wait` seconds on the hub).
    public func control(after: Int64?, wait: Int) async throws -> ControlEnvelope {
        var query = [("wait", "\(wait)")]
        if let after { query.insert(("after_generation", "\(after)"), at: 0) }
        let data = try await call("GET", "/api/v1/control", query: query)
        return try decodeContract(data, "control")
    }

    /// The published desired state of a host: its generation and spec (`nil` before the first publish).
    public func desired(hostID: String) async throws -> (generation: Int64, spec: DesiredState?) {
        let j = try await json("GET", "/api/v1/hosts/\(PathSegment.encode(hostID))/desired")
        let gen = j["generation"]?.lenientInt ?? 0
        guard let spec = j["spec"], spec != .null else { return (gen, nil) }
        do { return (gen, try DesiredState.decode(spec.serialized())) } catch let e as ContractError {
            throw HubClientError(code: "decoding", message: "published desired state breaks the contract: \(e)")
        }
    }

    /// A signed op delivered to this host: the exact bytes and the armored signature.
    public struct DeliveredOp: Sendable, Equatable {
        public var id: String
        public var blob: [UInt8]
        public var signature: String
    }

    public func nextSignedOp() async throws -> DeliveredOp? {
        let j = try await json("GET", "/api/v1/signed-ops/next")
        guard let op = j["op"], op != .null else { return nil }
        guard let id = op["id"]?.stringValue, let blob = op["blob"]?.stringValue, let sig = op["signature"]?.stringValue else {
            throw HubClientError(code: "decoding", message: "signed op without id, blob or signature")
        }
        return DeliveredOp(id: id, blob: Array(blob.utf8), signature: sig)
    }

    public func reportSignedOpResult(id: String, applied: Bool, reason: String?) async throws {
        var body: [String: JSONValue] = ["outcome": .string(applied ? "applied" : "rejected")]
        if let reason { body["reason"] = .string(reason) }
        _ = try await json("POST", "/api/v1/signed-ops/\(PathSegment.encode(id))/result", body: .object(body))
    }

    public func postEvent(type: String, severity: HubEvent.Severity, data: JSONValue = .object([:])) async throws {
        _ = try await json("POST", "/api/v1/events", body: .object(["type": .string(type), "severity": .string(severity.rawValue), "data": data]))
    }

    // MARK: - Operator

    /// Signed-op requests, as JSON objects (`id`, `blob`, `summary`, `customer_name`, `host_name`, …).
    public func signedOps(status: String?) async throws -> [JSONValue] {
        let j = try await json("GET", "/api/v1/signed-ops", query: status.map { [("status", $0)] } ?? [])
        return j["signed_ops"]?.arrayValue ?? []
    }

    public func uploadSignature(opID: String, armored: String) async throws -> JSONValue {
        try await json("POST", "/api/v1/signed-ops/\(PathSegment.encode(opID))/signature", body: .object(["signature": .string(armored)]))
    }

    func decodeContract<T: Decodable>(_ data: Data, _ what: String) throws -> T {
        do { return try ContractCoding.decode(data) } catch let e as ContractError {
            throw HubClientError(code: "decoding", message: "the hub's \(what) answer breaks the contract: \(e)")
        }
    }
}
