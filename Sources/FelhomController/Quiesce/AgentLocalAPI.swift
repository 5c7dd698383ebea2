import FelhomAPI
import FelhomCore
import FelhomHTTP
import Foundation

/// The agent's local API as the controller uses it (SPEC §4): is a backup of this guest due, start
/// one, follow it. The real one is ``AgentLocalAPIClient``; the quiesce tests also use fakes.
public protocol AgentLocalAPI: Sendable {
    /// `GET /backup/due` → `{"due": bool}`.
    func backupDue() async throws(ControllerError) -> Bool
    /// `POST /backup` → 202 `{"id", "status": "running"}` (while a run is going, that run's id).
    func startBackup() async throws(ControllerError) -> BackupRun
    /// `GET /backup/status?id=ID` → `{"id", "status", "volid"?, "reason"?}`.
    func backupStatus(id: String) async throws(ControllerError) -> BackupRun
}

/// The agent's local API over HTTPS with the agent's leaf certificate pinned and the guest's token
/// as `Authorization: Bearer …`. Answers are decoded strictly; an error body
/// `{"error": {"code", "message"}}` becomes a one-line error with the agent's code. The token never
/// appears in errors.
public struct AgentLocalAPIClient: AgentLocalAPI {
    let endpoint: HTTPEndpoint
    let transport: any HTTPTransport
    let token: Secret

    /// `url` is `agent.url`; `fingerprint` the agent's leaf certificate SHA-256 (required for https).
    public init(url: String, fingerprint: String?, token: Secret, timeout: Duration = .seconds(30)) throws(ControllerError) {
        do {
            endpoint = try HTTPEndpoint(url: url, setting: "agent.url")
        } catch {
            throw ControllerError(.config, error.message)
        }
        var trust = TLSTrust.systemDefault
        if endpoint.useTLS {
            guard let fingerprint, !fingerprint.isEmpty else {
                throw ControllerError(.config, "agent.fingerprint is required for an https:// agent.url (the agent's certificate is self-signed)")
            }
            do { trust = .pinnedLeafSHA256(try CertificateFingerprint(parsing: fingerprint)) } catch {
                throw ControllerError(.config, "agent.fingerprint: \(error)")
            }
        }
        transport = endpoint.transport(trust: trust, timeout: timeout)
        self.token = token
    }

    public func backupDue() async throws(ControllerError) -> Bool {
        struct Due: Decodable { var due: Bool }
        return try await call("GET", "/backup/due", expect: [200], as: Due.self).due
    }

    public func startBackup() async throws(ControllerError) -> BackupRun {
        let run = try await call("POST", "/backup", expect: [200, 202], as: BackupRun.self)
        guard run.id?.isEmpty == false else { throw ControllerError(.runtime, "the agent started a backup without an id") }
        return run
    }

    public func backupStatus(id: String) async throws(ControllerError) -> BackupRun {
        let run = try await call("GET", "/backup/status?id=" + PathSegment.encode(id), expect: [200], as: BackupRun.self)
        guard run.id == id else {
            throw ControllerError(.runtime, "the agent answered the status of run '\(run.id ?? "none")' when asked for '\(id)'")
        }
        return run
    }

    /// Hands an operator-signed `guest.rollback` of this guest to the agent (`POST /rollback`);
    /// the answer is the run (`running` once verified). The rollback stops this guest.
    public func rollback(_ request: RollbackRequest) async throws(ControllerError) -> BackupRun {
        let body: Data
        do { body = try JSONEncoder().encode(request) } catch { throw ControllerError(.runtime, "cannot encode the rollback request") }
        return try await call("POST", "/rollback", expect: [202], as: BackupRun.self, body: body)
    }

    /// The outcome of a rollback handed in earlier (`GET /rollback/status?id=ID`).
    public func rollbackStatus(id: String) async throws(ControllerError) -> BackupRun {
        try await call("GET", "/rollback/status?id=" + PathSegment.encode(id), expect: [200], as: BackupRun.self)
    }

    func call<T: Decodable>(_ method: String, _ target: String, expect: Set<Int>, as: T.Type, body: Data? = nil) async throws(ControllerError) -> T {
        let what = "\(method) \(target.split(separator: "?").first.map(String.init) ?? target)"
        let response: HTTPResponseSpec
        do {
            response = try await transport.send(
                HTTPRequestSpec(
                    method: method, target: endpoint.path + target,
                    headers: [("Authorization", "Bearer \(token.reveal())"), ("Accept", "application/json")],
                    body: body ?? (method == "POST" ? Data("{}".utf8) : nil)))
        } catch {
            throw ControllerError(.runtime, "agent local API unreachable (\(what)): \(error)")
        }
        guard expect.contains(response.status) else {
            // `{"error": {"code", "message"}}`, the same body the hub answers errors with.
            if let body = try? JSONDecoder().decode(APIErrorBody.self, from: response.body) {
                throw ControllerError(
                    .runtime,
                    "agent local API \(what): \(response.status) \(TerminalText.escaped(body.error.code)): \(TerminalText.escaped(String(body.error.message.prefix(300))))"
                )
            }
            throw ControllerError(.runtime, "agent local API \(what): HTTP \(response.status)")
        }
        do { return try JSONDecoder().decode(T.self, from: response.body) } catch {
            throw ControllerError(.runtime, "agent local API \(what): unexpected answer (\(error))")
        }
    }
}
