import FelhomCore
import Foundation

/// The typed Proxmox VE API client (`https://HOST:8006/api2/json`, `PVEAPIToken=` auth).
///
/// Every call goes through one ``request(_:_:query:form:)`` choke point that builds the request,
/// unwraps the `{"data": …}` envelope and turns any non-2xx answer into a ``PVEError``. The client
/// makes HTTP calls only; it never runs a command (root work lives in ``PrivilegedBackend``).
public struct PVEClient: PVEAPI {
    public let connection: PVEConnection
    let transport: HTTPTransport

    /// A client over the real network transport, trusting per `connection.trust`.
    public init(connection: PVEConnection) {
        self.connection = connection
        self.transport = NIOHTTPTransport(
            host: connection.host, port: connection.port, useTLS: connection.useTLS, trust: connection.trust,
            requestTimeout: connection.requestTimeout)
    }

    /// A client over a given transport (tests).
    public init(connection: PVEConnection, transport: HTTPTransport) {
        self.connection = connection
        self.transport = transport
    }

    // MARK: - The choke point

    /// Sends one API call and returns the envelope's `data`.
    /// GET and DELETE carry parameters in the query (PVE refuses a body on them); POST and PUT as a form.
    public func request(
        _ method: String, _ path: String, query: [(String, String)] = [], form: [(String, String)] = []
    ) async throws -> JSONValue {
        var target = "/api2/json" + path
        let q = query + ((method == "GET" || method == "DELETE") ? form : [])
        if !q.isEmpty { target += "?" + Self.formEncode(q) }
        var headers = [("Authorization", connection.authorizationHeader)]
        var body: Data?
        if method == "POST" || method == "PUT" {
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            body = Data(Self.formEncode(form).utf8)
        }
        let name = "\(method) \(path)"
        let response: HTTPResponseSpec
        var attempt = 0
        while true {
            do {
                response = try await transport.send(HTTPRequestSpec(method: method, target: target, headers: headers, body: body))
                break
            } catch let e as HTTPClientError {
                // A read that broke at the connection (reset, closed channel, refused) is asked again,
                // twice, after 0.2 s and 0.6 s; a write (POST/PUT/DELETE) never is: it may have happened.
                attempt += 1
                guard method == "GET", e.code == .transport, attempt <= 2 else { throw PVEError(transport: e) }
                try await Task.sleep(for: .milliseconds(200 * (attempt == 1 ? 1 : 3)))
            }
        }
        guard (200..<300).contains(response.status) else {
            throw PVEError.fromResponse(status: response.status, reason: response.reason, body: response.body, request: name)
        }
        do {
            let json = try JSONValue.parse(response.body)
            guard let data = json["data"] else {
                throw PVEError(code: .decoding, message: "answer has no 'data' member", httpStatus: response.status, request: name)
            }
            return data
        } catch let e as JSONValueError {
            throw PVEError(code: .decoding, message: e.message, httpStatus: response.status, request: name)
        }
    }

    static func formEncode(_ pairs: [(String, String)]) -> String {
        pairs.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
    }

    static func percentEncode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    static func seg(_ s: String) -> String { percentEncode(s) }

    private func list<T>(_ data: JSONValue, _ what: String, _ make: (JSONValue) throws -> T) throws -> [T] {
        guard case .array(let items) = data else {
            throw PVEError(code: .decoding, message: "\(what): expected an array, got \(data.kindName)")
        }
        return try items.map(make)
    }

    private func upid(_ data: JSONValue, _ what: String) throws -> UPID {
        guard let s = data.stringValue else {
            throw PVEError(code: .decoding, message: "\(what): expected a UPID string, got \(data.kindName)")
        }
        return try UPID(parsing: s)
    }

    private func ct(_ node: String, _ vmid: Int) -> String { "/nodes/\(Self.seg(node))/lxc/\(vmid)" }

    // MARK: - Reads

    public func version() async throws -> PVEVersion { try PVEVersion(json: try await request("GET", "/version")) }

    public func nodes() async throws -> [PVENode] {
        try list(try await request("GET", "/nodes"), "nodes", PVENode.init(json:))
    }

    public func nodeStatus(node: String) async throws -> PVENodeStatus {
        try PVENodeStatus(json: try await request("GET", "/nodes/\(Self.seg(node))/status"))
    }

    public func containers(node: String) async throws -> [PVEGuestStatus] {
        try list(try await request("GET", "/nodes/\(Self.seg(node))/lxc"), "containers", PVEGuestStatus.init(json:))
            .sorted { $0.vmid < $1.vmid }
    }

    public func containerStatus(node: String, vmid: Int) async throws -> PVEGuestStatus {
        var json = try await request("GET", ct(node, vmid) + "/status/current")
        // Very old servers omit vmid here; the caller knows it.
        if case .object(var o) = json, o["vmid"] == nil {
            o["vmid"] = .int(Int64(vmid))
            json = .object(o)
        }
        return try PVEGuestStatus(json: json)
    }

    public func containerConfig(node: String, vmid: Int, current: Bool = true) async throws -> PVEGuestConfig {
        try PVEGuestConfig(json: try await request("GET", ct(node, vmid) + "/config", query: current ? [("current", "1")] : []))
    }

    public func containerInterfaces(node: String, vmid: Int) async throws -> [PVEInterface]? {
        let data = try await request("GET", ct(node, vmid) + "/interfaces")
        if data == .null { return nil }
        return try list(data, "interfaces", PVEInterface.init(json:))
    }

    public func storages() async throws -> [PVEStorageConfig] {
        try list(try await request("GET", "/storage"), "storages", PVEStorageConfig.init(json:))
    }

    public func nodeStorages(node: String) async throws -> [PVENodeStorage] {
        try list(try await request("GET", "/nodes/\(Self.seg(node))/storage"), "node storages", PVENodeStorage.init(json:))
    }

    public func storageContent(node: String, storage: String, content: String? = nil, vmid: Int? = nil) async throws
        -> [PVEStorageContent]
    {
        var q: [(String, String)] = []
        if let content { q.append(("content", content)) }
        if let vmid { q.append(("vmid", String(vmid))) }
        let data = try await request("GET", "/nodes/\(Self.seg(node))/storage/\(Self.seg(storage))/content", query: q)
        return try list(data, "storage content", PVEStorageContent.init(json:))
    }

    public func snapshots(node: String, vmid: Int) async throws -> [PVESnapshot] {
        try list(try await request("GET", ct(node, vmid) + "/snapshot"), "snapshots", PVESnapshot.init(json:))
    }

    public func taskStatus(_ upid: UPID) async throws -> PVETaskStatus {
        try PVETaskStatus(
            json: try await request("GET", "/nodes/\(Self.seg(upid.node))/tasks/\(Self.seg(upid.description))/status"))
    }

    public func ownTasks(node: String, vmid: Int? = nil, type: String? = nil) async throws -> [UPID] {
        var q: [(String, String)] = [("source", "all"), ("limit", "500")]
        if let vmid { q.append(("vmid", String(vmid))) }
        if let type { q.append(("typefilter", type)) }
        let data = try await request("GET", "/nodes/\(Self.seg(node))/tasks", query: q)
        let all = try list(data, "tasks") { item -> UPID in
            guard let text = item["upid"]?.stringValue else { throw PVEError(code: .decoding, message: "tasks: an entry without upid") }
            return try UPID(parsing: text)
        }
        // A token with Sys.Audit sees every user's tasks: keep this token's own.
        return all.filter { $0.user == connection.tokenID && (vmid == nil || $0.id == String(vmid!)) && (type == nil || $0.type == type) }
    }

    public func taskLog(_ upid: UPID, start: Int = 0, limit: Int = 0) async throws -> [PVETaskLogLine] {
        let data = try await request(
            "GET", "/nodes/\(Self.seg(upid.node))/tasks/\(Self.seg(upid.description))/log",
            query: [("start", String(start)), ("limit", String(limit))])
        return try list(data, "task log", PVETaskLogLine.init(json:))
    }

    // MARK: - Mutations

    public func createContainer(node: String, _ spec: ContainerCreateSpec) async throws -> UPID {
        try upid(try await request("POST", "/nodes/\(Self.seg(node))/lxc", form: spec.formFields), "create")
    }

    public func destroyContainer(node: String, vmid: Int, purge: Bool = false, force: Bool = false) async throws -> UPID {
        var q: [(String, String)] = []
        if purge { q.append(("purge", "1")) }
        if force { q.append(("force", "1")) }
        return try upid(try await request("DELETE", ct(node, vmid), query: q), "destroy")
    }

    public func startContainer(node: String, vmid: Int) async throws -> UPID {
        try upid(try await request("POST", ct(node, vmid) + "/status/start"), "start")
    }

    public func stopContainer(node: String, vmid: Int) async throws -> UPID {
        try upid(try await request("POST", ct(node, vmid) + "/status/stop"), "stop")
    }

    public func shutdownContainer(node: String, vmid: Int, timeout: Int? = nil, forceStop: Bool = false) async throws -> UPID {
        var f: [(String, String)] = []
        if let timeout { f.append(("timeout", String(timeout))) }
        if forceStop { f.append(("forceStop", "1")) }
        return try upid(try await request("POST", ct(node, vmid) + "/status/shutdown", form: f), "shutdown")
    }

    public func updateContainerConfig(node: String, vmid: Int, _ update: ContainerConfigUpdate) async throws {
        var f = update.set.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if !update.delete.isEmpty { f.append(("delete", update.delete.joined(separator: ","))) }
        if let d = update.digest { f.append(("digest", d)) }
        guard !f.isEmpty else { return }
        let data = try await request("PUT", ct(node, vmid) + "/config", form: f)
        // LXC config updates are synchronous: `null`. Tolerate a UPID from nonconforming servers by waiting on it.
        if let s = data.stringValue, let task = try? UPID(parsing: s) {
            _ = try await waitTask(task)
        }
    }

    public func createSnapshot(node: String, vmid: Int, name: String, description: String? = nil) async throws -> UPID {
        var f = [("snapname", name)]
        if let description { f.append(("description", description)) }
        return try upid(try await request("POST", ct(node, vmid) + "/snapshot", form: f), "snapshot")
    }

    public func rollbackSnapshot(node: String, vmid: Int, name: String, start: Bool = false) async throws -> UPID {
        try upid(
            try await request(
                "POST", ct(node, vmid) + "/snapshot/\(Self.seg(name))/rollback", form: start ? [("start", "1")] : []),
            "rollback")
    }

    public func deleteSnapshot(node: String, vmid: Int, name: String, force: Bool = false) async throws -> UPID {
        try upid(
            try await request("DELETE", ct(node, vmid) + "/snapshot/\(Self.seg(name))", query: force ? [("force", "1")] : []),
            "delete snapshot")
    }

    public func vzdump(node: String, _ options: VzdumpOptions) async throws -> PVEVzdumpResult {
        guard !options.vmids.isEmpty else {
            throw PVEError(code: .invalidArgument, message: "vzdump needs at least one vmid")
        }
        var f: [(String, String)] = [
            ("vmid", options.vmids.map(String.init).joined(separator: ",")), ("storage", options.storage),
            ("mode", options.mode), ("remove", options.remove ? "1" : "0"),
        ]
        if let c = options.compress { f.append(("compress", c)) }
        if let n = options.notesTemplate { f.append(("notes-template", n)) }
        if options.protected { f.append(("protected", "1")) }
        let data = try await request("POST", "/nodes/\(Self.seg(node))/vzdump", form: f)
        if data.stringValue == "OK" { return .nothingToDo }
        return .task(try upid(data, "vzdump"))
    }

    public func createStorage(_ spec: StorageCreateSpec) async throws {
        var f: [(String, String)] = [
            ("storage", spec.storage), ("type", spec.type), ("path", spec.path), ("content", spec.content.joined(separator: ",")),
        ]
        if spec.isMountpoint { f.append(("is_mountpoint", "yes")) }
        if !spec.nodes.isEmpty { f.append(("nodes", spec.nodes.joined(separator: ","))) }
        _ = try await request("POST", "/storage", form: f)
    }

    public func updateStorage(_ storage: String, content: [String]) async throws {
        _ = try await request("PUT", "/storage/\(Self.seg(storage))", form: [("content", content.joined(separator: ","))])
    }

    public func deleteStorage(_ storage: String) async throws {
        _ = try await request("DELETE", "/storage/\(Self.seg(storage))")
    }
}
