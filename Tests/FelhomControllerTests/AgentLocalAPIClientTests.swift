import FelhomController
import FelhomCore
import FelhomHTTP
import FelhomTestSupport
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import PVESimulator
import Synchronization
import Testing

/// A small stand-in for the agent's local API (the backups issue builds the real one with the same
/// shapes): HTTPS with a self-signed certificate, `Authorization: Bearer` checked, one backup run
/// at a time, `POST /backup` idempotent while a run is going.
final class FakeAgentServer: Sendable {
    struct State {
        var due = true
        var runs: [String: String] = [:]  // id -> status
        var current: String?
        var seenTokens: [String] = []
    }
    let state = Mutex(State())
    let token: String
    let tls: TLSMaterial

    init(token: String) throws {
        self.token = token
        tls = try TLSMaterial.selfSigned(commonName: "felhom-agent", names: ["127.0.0.1"])
    }

    func finish(_ status: String) {
        state.withLock { s in
            if let c = s.current {
                s.runs[c] = status
                s.current = nil
            }
        }
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"code":"\#(code)","message":"\#(message)"}}"#)))
    }
    static func json(_ text: String, _ status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let token = self.token
        let server = self
        @Sendable func authorized(_ req: Request) -> Bool {
            let header = req.headers[.authorization] ?? ""
            server.state.withLock { $0.seenTokens.append(header) }
            return header == "Bearer \(token)"
        }
        router.get("/backup/due") { req, _ -> Response in
            guard authorized(req) else { return Self.error(.unauthorized, "unauthorized", "bad guest token") }
            return Self.json(#"{"due":\#(server.state.withLock { $0.due })}"#)
        }
        router.post("/backup") { req, _ -> Response in
            guard authorized(req) else { return Self.error(.unauthorized, "unauthorized", "bad guest token") }
            let id = server.state.withLock { s -> String in
                if let c = s.current { return c }
                let id = "run-\(s.runs.count + 1)"
                s.runs[id] = "running"
                s.current = id
                return id
            }
            return Self.json(#"{"id":"\#(id)","status":"running"}"#, .accepted)
        }
        router.get("/backup/status") { req, _ -> Response in
            guard authorized(req) else { return Self.error(.unauthorized, "unauthorized", "bad guest token") }
            guard let id = req.uri.queryParameters.get("id") else {
                let latest = server.state.withLock { $0.runs.keys.sorted().last }
                guard let latest else { return Self.json(#"{"status":"idle"}"#) }
                return Self.json(#"{"id":"\#(latest)","status":"\#(server.state.withLock { $0.runs[latest] ?? "idle" })"}"#)
            }
            guard let status = server.state.withLock({ $0.runs[id] }) else { return Self.error(.notFound, "not_found", "no backup run \(id)") }
            let extra =
                status == "done" ? #","volid":"pbs:backup/ct/120/2026-11-30T02:00:00Z""# : status == "failed" ? #","reason":"datastore full""# : ""
            return Self.json(#"{"id":"\#(id)","status":"\#(status)"\#(extra)}"#)
        }
        return router
    }

    /// Runs the server on a free loopback port for `body`.
    func run<T: Sendable>(_ body: (Int) async throws -> T) async throws -> T {
        var quiet = Logger(label: "fake-agent")
        quiet.logLevel = .critical
        let tlsConfig = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(tls.certificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(tls.privateKeyPEM.utf8), format: .pem)))
        return try await withServedApplication(
            { onPort in
                Application(
                    router: router(), server: try HTTPServerBuilder.tls(.http1(), tlsConfiguration: tlsConfig),
                    configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: { channel in await onPort(channel.localAddress?.port) }, logger: quiet)
            }, body: body)
    }
}

@Suite struct AgentLocalAPIClientTests {
    let token = "guest-token-0123456789abcdef"

    @Test func speaksTheLocalAPIWithAPinnedCertificateAndTheGuestToken() async throws {
        let server = try FakeAgentServer(token: token)
        try await server.run { port in
            let client = try AgentLocalAPIClient(url: "https://127.0.0.1:\(port)", fingerprint: server.tls.fingerprint, token: Secret(token))
            #expect(try await client.backupDue())
            let run = try await client.startBackup()
            #expect(run.status == .running && run.id == "run-1")
            #expect(try await client.startBackup().id == "run-1", "idempotent while running")
            #expect(try await client.backupStatus(id: "run-1").status == .running)
            server.finish("done")
            let done = try await client.backupStatus(id: "run-1")
            #expect(done.status == .done && done.volid?.hasPrefix("pbs:backup/ct/120/") == true)
            #expect(server.state.withLock { $0.seenTokens }.allSatisfy { $0 == "Bearer \(token)" })
        }
    }

    @Test func wrongPinWrongTokenAndAgentErrorsAreClearAndNeverShowTheToken() async throws {
        let server = try FakeAgentServer(token: token)
        try await server.run { port in
            let other = try TLSMaterial.selfSigned(commonName: "impostor")
            let pinnedWrong = try AgentLocalAPIClient(url: "https://127.0.0.1:\(port)", fingerprint: other.fingerprint, token: Secret(token))
            do {
                _ = try await pinnedWrong.backupDue()
                Issue.record("a wrong pin was accepted")
            } catch let error as ControllerError {
                #expect(error.message.contains("does not match the pinned"), "\(error)")
                #expect(!error.description.contains(token))
            }
            let wrongToken = try AgentLocalAPIClient(
                url: "https://127.0.0.1:\(port)", fingerprint: server.tls.fingerprint, token: Secret("not-the-token-000000000000"))
            do {
                _ = try await wrongToken.backupDue()
                Issue.record("a wrong token was accepted")
            } catch let error as ControllerError {
                #expect(error.message.contains("401") && error.message.contains("unauthorized"), "\(error)")
                #expect(!error.description.contains("not-the-token"))
            }
            let client = try AgentLocalAPIClient(url: "https://127.0.0.1:\(port)", fingerprint: server.tls.fingerprint, token: Secret(token))
            do {
                _ = try await client.backupStatus(id: "run-404")
                Issue.record("an unknown run was accepted")
            } catch let error as ControllerError {
                #expect(error.message.contains("not_found") && error.message.contains("no backup run run-404"), "\(error)")
            }
        }
        // An https URL without a pin, and plain http off loopback, are configuration errors.
        #expect(throws: ControllerError.self) { try AgentLocalAPIClient(url: "https://10.0.0.1:8443", fingerprint: nil, token: Secret(token)) }
        #expect(throws: ControllerError.self) { try AgentLocalAPIClient(url: "http://10.0.0.1:8080", fingerprint: nil, token: Secret(token)) }
        // Unreachable: named.
        let gone = try AgentLocalAPIClient(url: "http://127.0.0.1:9", fingerprint: nil, token: Secret(token))
        do {
            _ = try await gone.backupDue()
            Issue.record("an unreachable agent answered")
        } catch { #expect(error.message.contains("unreachable") && error.message.contains("GET /backup/due"), "\(error)") }
    }

    /// The quiesce loop end to end over HTTPS against the fake agent: stacks (in memory) come back
    /// when the backup is done.
    @Test func quiesceOverTheRealClient() async throws {
        let server = try FakeAgentServer(token: token)
        try await server.run { port in
            let w = try QuiesceWorld()
            let compose = FakeCompose(running: ["a": true, "b": true, "c": true, "traefik": true])
            let client = try AgentLocalAPIClient(url: "https://127.0.0.1:\(port)", fingerprint: server.tls.fingerprint, token: Secret(token))
            let q = Quiescer(
                stacks: Stacks(directory: w.stacksDir, protectedNames: ["traefik"], runtime: compose), agent: client, stateDir: w.stateDir,
                settings: .init(pollInterval: .milliseconds(50), maxQuiesce: .seconds(20)))
            let finisher = Task {
                // Finish the run once the quiesce has started it (however slow a loaded machine is).
                for _ in 0..<2000 where server.state.withLock({ $0.current == nil }) { try await Task.sleep(for: .milliseconds(10)) }
                try await Task.sleep(for: .milliseconds(200))
                server.finish("done")
            }
            let outcome = try await q.runIfDue()
            _ = try? await finisher.value
            #expect(outcome == .done(volid: "pbs:backup/ct/120/2026-11-30T02:00:00Z"))
            #expect(["a", "b", "c"].allSatisfy(compose.isRunning))
        }
    }
}
