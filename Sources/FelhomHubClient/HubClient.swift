import FelhomAPI
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
        var text = status.map { "hub answered \($0) \(code): \(message)" } ?? "\(code): \(message)"
        if let path { text += " (at \(path))" }
        return text
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
        guard let url = URL(string: text) else { throw HubClientError(code: "invalid_argument", message: "the hub URL is not a URL") }
        self.init(baseURL: url, key: key, transport: endpoint.transport(trust: trust, timeout: timeout))
    }

    /// With any transport (tests).
    public init(baseURL: URL, key: Secret, transport: any HTTPTransport) {
        self.baseURL = baseURL
        self.key = key
        self.transport = transport
        var path = baseURL.path
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
    }

    /// One call; a non-2xx answer becomes a ``HubClientError`` carrying the hub's message.
    public func call(
        _ method: String, _ path: String, query: [(String, String)] = [], body: Data? = nil, contentType: String = "application/json",
        responseSink: (@Sendable (UnsafeRawBufferPointer) throws -> Void)? = nil, timeout: Duration? = nil
    ) async throws -> Data {
        var target = basePath + path
        if !query.isEmpty {
            target +=
                "?"
                + query.map {
                    "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+"))) ?? "")"
                }.joined(separator: "&")
        }
        var headers = anonymous ? [] : [("Authorization", "Bearer \(key.reveal())")]
        if body != nil { headers.append(("Content-Type", contentType)) }
        let response: HTTPResponseSpec
        do {
            var spec = HTTPRequestSpec(method: method, target: target, headers: headers, body: body, responseSink: responseSink)
            spec.timeout = timeout
            response = try await transport.send(spec)
        } catch let error as HTTPClientError {
            throw HubClientError(code: error.code.raw, message: error.message)
        }
        guard (200..<300).contains(response.status) else {
            let err = (try? JSONValue.parse(response.body))?["error"]
            throw HubClientError(
                code: err?["code"]?.stringValue ?? "http", message: err?["message"]?.stringValue ?? "HTTP \(response.status) \(response.reason)",
                status: response.status, path: err?["path"]?.stringValue)
        }
        return response.body
    }

    /// Sends `body` (JSON in ``APICoding``) and decodes the answer as `T`.
    public func send<T: Decodable>(
        _ method: String, _ path: String, query: [(String, String)] = [], body: (some Encodable)? = Optional<Empty>.none, as type: T.Type = T.self
    ) async throws -> T {
        let data = try body.map { value in
            do { return try APICoding.encoder().encode(value) } catch {
                throw HubClientError(code: "invalid_argument", message: "cannot encode the request to \(method) \(path): \(error)")
            }
        }
        return try decodeAnswer(try await call(method, path, query: query, body: data), method, path)
    }

    /// Decodes an answer of the hub (``APICoding``); a shape the client does not know is a `decoding` error naming the call.
    func decodeAnswer<T: Decodable>(_ data: Data, _ method: String, _ path: String) throws -> T {
        do { return try APICoding.decoder().decode(T.self, from: data) } catch {
            throw HubClientError(code: "decoding", message: "the hub's answer to \(method) \(path) is not the documented shape (\(error))")
        }
    }

    /// An empty request body.
    public struct Empty: Codable, Sendable { public init() {} }

    /// One path segment, percent-encoded (ids come from the hub or the operator, never trusted as paths).
    static func segment(_ text: String) -> String { PathSegment.encode(text) }

    /// `GET /healthz` without a key: reachability and TLS as configured.
    public static func health(url: String, trust: TLSTrust = .systemDefault) async throws -> Health {
        var client = try HubClient(url: url, key: Secret("anonymous"), trust: trust, timeout: .seconds(15))
        client.anonymous = true
        return try await client.send("GET", "/healthz", as: Health.self)
    }

    /// `GET /healthz` without a key, with the hub's clock: its `Date` header (nil when absent or
    /// unparsable) and when the request was sent and answered here.
    public static func healthAndClock(url: String, trust: TLSTrust = .systemDefault) async throws -> (
        health: Health, hubDate: Date?, sent: Date, answered: Date
    ) {
        let client = try HubClient(url: url, key: Secret("anonymous"), trust: trust, timeout: .seconds(15))
        let sent = Date()
        let response: HTTPResponseSpec
        do {
            response = try await client.transport.send(HTTPRequestSpec(method: "GET", target: client.basePath + "/healthz", headers: [], body: nil))
        } catch let error as HTTPClientError {
            throw HubClientError(code: error.code.raw, message: error.message)
        }
        let answered = Date()
        guard response.status == 200 else {
            throw HubClientError(code: "http", message: "HTTP \(response.status) \(response.reason)", status: response.status)
        }
        let health: Health = try client.decodeAnswer(response.body, "GET", "/healthz")
        let header = response.headers.first { $0.0.lowercased() == "date" }?.1
        return (health, header.flatMap(Self.httpDate), sent, answered)
    }

    /// An HTTP date (`Wed, 02 Dec 2026 00:24:00 GMT`, RFC 9110 IMF-fixdate).
    static func httpDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text)
    }

    // MARK: - Agent

    /// Trades a one-time enrollment token for this host's key. The token is the only credential.
    public static func enroll(url: String, token: Secret, trust: TLSTrust = .systemDefault) async throws -> (hostID: String, key: Secret) {
        let enrolled = try await enrollment(url: url, token: token, trust: trust)
        return (enrolled.hostID, Secret(enrolled.apiKey))
    }

    /// Trades an enrollment token for the host's identity, with what kind of token it was
    /// (``Enrolled/recovery``: a replacement box for a lost one).
    public static func enrollment(url: String, token: Secret, trust: TLSTrust = .systemDefault) async throws -> Enrolled {
        // No bearer key: the token in the body is the credential.
        var client = try HubClient(url: url, key: token, trust: trust, timeout: .seconds(30))
        client.anonymous = true
        return try await client.send("POST", "/api/v1/enroll", body: EnrollRequest(token: token.reveal()), as: Enrolled.self)
    }

    /// Posts a host report; returns the control envelope.
    public func postHostReport(_ report: HostReport) async throws -> ControlEnvelope {
        let data = try await call("POST", "/api/v1/host-report", body: report.encoded())
        return try decodeContract(data, "host-report")
    }

    /// A guest's generated controller config (that guest's key, or the operator's).
    public func controllerConfig(guestID: String) async throws -> JSONValue {
        let data = try await call("GET", "/api/v1/guests/\(Self.segment(guestID))/config")
        do { return try JSONValue.parse(data) } catch {
            throw HubClientError(code: "decoding", message: "the hub's controller config is not JSON: \(error)")
        }
    }

    /// The latest version of each of the guest's secret bundles (`GET /api/v1/guests/{id}/secrets`):
    /// the file bytes for the guest's own key, key names only for the operator.
    public func secretBundles(guestID: String) async throws -> [SecretBundleView] {
        try await send("GET", "/api/v1/guests/\(Self.segment(guestID))/secrets", as: SecretBundleList.self).bundles
    }

    /// Posts a guest report (a controller's key); returns the control envelope.
    public func postGuestReport(_ report: GuestReport) async throws -> ControlEnvelope {
        let data = try await call("POST", "/api/v1/guest-report", body: report.encoded())
        return try decodeContract(data, "guest-report")
    }

    /// Long-polls for a generation past `after` (bounded by `wait` seconds on the hub).
    public func control(after: Int64?, wait: Int) async throws -> ControlEnvelope {
        var query = [("wait", "\(wait)")]
        if let after { query.insert(("after_generation", "\(after)"), at: 0) }
        // The hub answers by `wait` seconds; past that plus a margin the link is presumed gone.
        let data = try await call("GET", "/api/v1/control", query: query, timeout: .seconds(wait + 20))
        return try decodeContract(data, "control")
    }

    /// The published desired state of a host: its generation and spec (`nil` before the first publish).
    public func desired(hostID: String) async throws -> (generation: Int64, spec: DesiredState?) {
        let view = try await desiredView(hostID: hostID)
        return (view.generation, view.spec)
    }

    /// The full desired view (the draft too, for operator and customer keys).
    public func desiredView(hostID: String) async throws -> DesiredView {
        let data = try await call("GET", "/api/v1/hosts/\(Self.segment(hostID))/desired")
        // The spec is checked against the contract strictly: a hub cannot slip unknown keys to the agent.
        do {
            let view: DesiredView = try decodeAnswer(data, "GET", "/api/v1/hosts/{id}/desired")
            if let spec = try JSONValue.parse(data)["spec"], spec != .null { _ = try DesiredState.decode(spec.serialized()) }
            return view
        } catch let error as ContractError {
            throw HubClientError(code: "decoding", message: "published desired state breaks the contract: \(error)")
        }
    }

    /// Gets (or, after a crash, gets again: same `idempotencyKey`, new key) a guest's API key.
    public func createGuest(hostID: String, name: String, idempotencyKey: String?) async throws -> (id: String, apiKey: Secret) {
        let created = try await send(
            "POST", "/api/v1/hosts/\(Self.segment(hostID))/guests", body: NewGuest(name: name, idempotencyKey: idempotencyKey), as: Created.self)
        guard let id = created.id, let key = created.apiKey else {
            throw HubClientError(code: "decoding", message: "the hub created a guest without answering its id and key")
        }
        return (id, Secret(key))
    }

    /// The next signed op for this host, or nil: the exact bytes and the armored signature.
    public func nextSignedOp(excluding: Set<String> = []) async throws -> DeliveredOp? {
        let query = excluding.isEmpty ? [] : [("exclude", excluding.sorted().joined(separator: ","))]
        let next = try await send("GET", "/api/v1/signed-ops/next", query: query, as: NextSignedOp.self)
        guard let op = next.op else { return nil }
        guard let signature = op.signature else {
            throw HubClientError(code: "decoding", message: "signed op \(op.id) delivered without a signature")
        }
        return DeliveredOp(id: op.id, blob: Array(op.blob.utf8), signature: signature)
    }

    /// A signed op delivered to this host: the exact bytes and the armored signature.
    public struct DeliveredOp: Sendable, Equatable {
        public var id: String
        public var blob: [UInt8]
        public var signature: String
    }

    public func reportSignedOpResult(id: String, applied: Bool, reason: String?) async throws {
        _ = try await send(
            "POST", "/api/v1/signed-ops/\(Self.segment(id))/result", body: SignedOpResult(outcome: applied ? "applied" : "rejected", reason: reason),
            as: SignedOpView.self)
    }

    /// One release: the signed manifest and signature verbatim (verify them before use).
    public func release(component: String, version: String) async throws -> ReleaseView {
        try await send("GET", "/api/v1/releases/\(Self.segment(component))/\(Self.segment(version))")
    }

    /// Streams a release's asset into `sink` piece by piece (never whole in memory).
    public func releaseAsset(component: String, version: String, into sink: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) async throws
    {
        _ = try await call("GET", "/api/v1/releases/\(Self.segment(component))/\(Self.segment(version))/asset", responseSink: sink)
    }

    /// Registers a signed release (operator).
    public func createRelease(_ release: NewRelease) async throws -> ReleaseView {
        try await send("POST", "/api/v1/releases", body: release)
    }

    /// Uploads a release's asset (operator).
    public func uploadReleaseAsset(component: String, version: String, bytes: Data) async throws -> ReleaseView {
        try decodeAnswer(
            try await call(
                "PUT", "/api/v1/releases/\(Self.segment(component))/\(Self.segment(version))/asset", body: bytes,
                contentType: "application/octet-stream"), "PUT", "asset")
    }

    /// A roll-out step (operator).
    public func rollout(component: String, version: String, _ request: RolloutRequest) async throws -> RolloutView {
        try await send("POST", "/api/v1/releases/\(Self.segment(component))/\(Self.segment(version))/rollout", body: request)
    }

    /// Posts an event. With `idempotencyKey`, saying it again (after a kill, or an answer that
    /// never came) records nothing new; `at` is when it happened (the hub keeps it as `client_at`).
    public func postEvent(
        type: String, severity: HubEvent.Severity, data: JSONValue = .object([:]), idempotencyKey: String? = nil, at: Date? = nil
    ) async throws {
        _ = try await send(
            "POST", "/api/v1/events", body: NewEvent(type: type, severity: severity, at: at, data: data, idempotencyKey: idempotencyKey),
            as: HubEvent.self)
    }

    // MARK: - Operator

    public func createCustomer(_ customer: NewCustomer) async throws -> String {
        let created = try await send("POST", "/api/v1/customers", body: customer, as: Created.self)
        guard let id = created.id else { throw HubClientError(code: "decoding", message: "the hub created a customer without answering its id") }
        return id
    }

    public func customers() async throws -> [CustomerView] {
        try await send("GET", "/api/v1/customers", as: CustomerList.self).customers
    }

    public func customer(_ id: String) async throws -> CustomerView {
        try await send("GET", "/api/v1/customers/\(Self.segment(id))", as: CustomerView.self)
    }

    /// A host and its first API key (shown once).
    public func createHost(customerID: String, name: String) async throws -> (id: String, apiKey: Secret) {
        let created = try await send("POST", "/api/v1/hosts", body: NewHost(customerID: customerID, name: name), as: Created.self)
        guard let id = created.id, let key = created.apiKey else {
            throw HubClientError(code: "decoding", message: "the hub created a host without answering its id and key")
        }
        return (id, Secret(key))
    }

    public func hosts() async throws -> [HostView] {
        try await send("GET", "/api/v1/hosts", as: HostList.self).hosts
    }

    public func host(_ id: String) async throws -> HostView {
        try await send("GET", "/api/v1/hosts/\(Self.segment(id))", as: HostView.self)
    }

    /// Block (nothing is changed on the box) or unblock a host.
    public func setHostBlocked(_ id: String, blocked: Bool) async throws -> HostView {
        try await send("POST", "/api/v1/hosts/\(Self.segment(id))/\(blocked ? "block" : "unblock")", as: HostView.self)
    }

    public func enrollmentToken(hostID: String, ttlSeconds: Int? = nil, recovery: Bool = false) async throws -> EnrollmentToken {
        try await send(
            "POST", "/api/v1/hosts/\(Self.segment(hostID))/enrollment",
            body: NewEnrollmentToken(ttlSeconds: ttlSeconds, recovery: recovery ? true : nil),
            as: EnrollmentToken.self)
    }

    /// Saves the draft desired state of a host (not yet published).
    public func putDesired(hostID: String, _ state: DesiredState) async throws -> DesiredView {
        let data = try await call("PUT", "/api/v1/hosts/\(Self.segment(hostID))/desired", body: state.encoded())
        return try decodeAnswer(data, "PUT", "/api/v1/hosts/{id}/desired")
    }

    /// Publishes the draft; returns the new generation.
    public func publishDesired(hostID: String) async throws -> Int64 {
        try await send("POST", "/api/v1/hosts/\(Self.segment(hostID))/desired/publish", as: Published.self).generation
    }

    /// Asks the box for a backup or a restore test of guest `vmid` now (operator); returns the
    /// request as published in the desired state.
    public func requestNow(hostID: String, kind: DesiredState.Request.Kind, vmid: Int) async throws -> DesiredState.Request {
        try await send(
            "POST", "/api/v1/hosts/\(Self.segment(hostID))/requests", body: NewOperatorRequest(kind: kind, vmid: vmid), as: DesiredState.Request.self)
    }

    /// The box reports its recovery data (host key): storage manifest, PBS fingerprint, and its
    /// escrow envelope (opaque to the hub).
    public func reportRecovery(_ report: BoxRecoveryReport) async throws {
        _ = try await call("POST", "/api/v1/recovery/box", body: try JSONEncoder().encode(report))
    }

    /// The box records one volume snapshot it uploaded (host key; docs/object-storage.md).
    public func recordVolumeSnapshot(_ record: VolumeSnapshotRecord) async throws {
        _ = try await call("POST", "/api/v1/volume-snapshots", body: try APICoding.encoder().encode(record))
    }

    /// A host's volume snapshot records, newest first (one volume when `volumeID` is given).
    public func volumeSnapshots(hostID: String, volumeID: String? = nil) async throws -> [VolumeSnapshotRecord] {
        let path = "/api/v1/hosts/\(Self.segment(hostID))/volume-snapshots"
        let query = volumeID.map { [("volume_id", $0)] } ?? []
        return try await send("GET", path, query: query, as: VolumeSnapshotList.self).snapshots
    }

    /// The retention job deleted these snapshots' objects (operator key); how many records changed.
    @discardableResult
    public func markVolumeSnapshotsDeleted(hostID: String, snapshotIDs: [String]) async throws -> Int {
        struct Marked: Decodable { var marked: Int }
        let path = "/api/v1/hosts/\(Self.segment(hostID))/volume-snapshots/deleted"
        return try await send("POST", path, body: DeletedVolumeSnapshots(snapshotIDs: snapshotIDs), as: Marked.self).marked
    }

    /// A host's recovery bundle (the operator's key, or the host's own key).
    public func recoveryBundle(hostID: String) async throws -> JSONValue {
        try JSONValue.parse(try await call("GET", "/api/v1/recovery/\(Self.segment(hostID))"))
    }

    public func drift(hostID: String) async throws -> DriftView {
        try await send("GET", "/api/v1/hosts/\(Self.segment(hostID))/drift", as: DriftView.self)
    }

    /// Events, newest first (filters optional; `limit` 1…1000).
    public func events(hostID: String? = nil, type: String? = nil, since: Timestamp? = nil, limit: Int? = nil) async throws -> [HubEvent] {
        var query: [(String, String)] = []
        if let hostID { query.append(("host_id", hostID)) }
        if let type { query.append(("type", type)) }
        if let since { query.append(("since", since.rfc3339)) }
        if let limit { query.append(("limit", String(limit))) }
        return try await send("GET", "/api/v1/events", query: query, as: EventList.self).events
    }

    public func registerOperatorKey(_ key: NewOperatorKey) async throws -> OperatorKeyView {
        try await send("POST", "/api/v1/operator-keys", body: key, as: OperatorKeyView.self)
    }

    /// Removes an operator signing key from the hub (agents: edit their `signers_file` too).
    public func removeOperatorKey(id: String) async throws -> OperatorKeyView {
        try await send("DELETE", "/api/v1/operator-keys/\(Self.segment(id))", as: OperatorKeyView.self)
    }

    /// Cancels a queued op that has not been delivered to its host.
    public func cancelSignedOp(_ id: String) async throws -> SignedOpView {
        try await send("POST", "/api/v1/signed-ops/\(Self.segment(id))/cancel", as: SignedOpView.self)
    }

    /// Lifts a customer's retrieval lock-out.
    public func unlockRetrieval(customerID: String) async throws -> Int {
        try await send("POST", "/api/v1/customers/\(Self.segment(customerID))/retrieval-unlock", as: RetrievalUnlocked.self).clearedFailedAttempts
    }

    public func operatorKeys() async throws -> [OperatorKeyView] {
        try await send("GET", "/api/v1/operator-keys", as: OperatorKeyList.self).operatorKeys
    }

    /// Queues an op for signing; the answer carries the exact `blob` to sign.
    public func createSignedOp(_ op: NewSignedOp) async throws -> SignedOpView {
        try await send("POST", "/api/v1/signed-ops", body: op, as: SignedOpView.self)
    }

    /// Signed-op requests (`status` filter optional). Hub text: the CLI shows what it decodes from each blob.
    public func signedOps(status: SignedOpStatus? = nil, hostID: String? = nil) async throws -> [SignedOpView] {
        var query: [(String, String)] = []
        if let status { query.append(("status", status.rawValue)) }
        if let hostID { query.append(("host_id", hostID)) }
        return try await send("GET", "/api/v1/signed-ops", query: query, as: SignedOpList.self).signedOps
    }

    public func signedOp(_ id: String) async throws -> SignedOpView {
        try await send("GET", "/api/v1/signed-ops/\(Self.segment(id))", as: SignedOpView.self)
    }

    public func uploadSignature(opID: String, armored: String) async throws -> SignedOpView {
        try await send("POST", "/api/v1/signed-ops/\(Self.segment(opID))/signature", body: SignatureUpload(signature: armored), as: SignedOpView.self)
    }

    func decodeContract<T: Decodable>(_ data: Data, _ what: String) throws -> T {
        do { return try ContractCoding.decode(data) } catch let error as ContractError {
            throw HubClientError(code: "decoding", message: "the hub's \(what) answer breaks the contract: \(error)")
        }
    }
}
