import FelhomAgent
import FelhomController
import FelhomCore
import FelhomHTTP
import FelhomTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// A backend with runs per guest, scripted by the test.
final class ScriptedBackend: LocalAPIBackend {
    struct State {
        var due: Set<Int> = []
        var runs: [Int: [BackupRun]] = [:]
    }
    let state = Mutex(State())

    func backupDue(vmid: Int) async -> Bool { state.withLock { $0.due.contains(vmid) } }
    func startBackup(vmid: Int) async throws(LocalAPIError) -> BackupRun {
        state.withLock { s in
            if let running = s.runs[vmid]?.last, running.status == .running { return running }
            let run = BackupRun(id: "bk-\(vmid)-\((s.runs[vmid]?.count ?? 0) + 1)", status: .running)
            s.runs[vmid, default: []].append(run)
            return run
        }
    }
    func backupStatus(vmid: Int, id: String?) async throws(LocalAPIError) -> BackupRun {
        let runs = state.withLock { $0.runs[vmid] ?? [] }
        guard let id else { return runs.last ?? BackupRun(id: nil, status: .idle) }
        guard let run = runs.first(where: { $0.id == id }) else { throw LocalAPIError(.notFound, "no backup run \(id) of this guest") }
        return run
    }
    func finish(_ vmid: Int, volid: String) {
        state.withLock { s in
            guard var run = s.runs[vmid]?.popLast() else { return }
            run.status = .done
            run.volid = volid
            s.runs[vmid]?.append(run)
        }
    }
}

/// The real local API server (HTTPS, hashed tokens, per-guest isolation) driven by the
/// controller's own client — the pair the quiesce loop uses in production.
@Suite struct LocalAPIServerTests {
    func withServer(
        perMinute: Int = 600, onSeen: @escaping @Sendable (Int) -> Void = { _ in },
        _ body: (LocalTokens, ScriptedBackend, String, String) async throws -> Void
    ) async throws {
        let dir = NSTemporaryDirectory() + "felhom-localapi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokens = try LocalTokens(path: dir + "/local-api-tokens.json")
        let backend = ScriptedBackend()
        let cert = try TLSMaterial.selfSigned(commonName: "felhom-agent", names: ["127.0.0.1"])
        let server = LocalAPIServer(
            tokens: tokens, backend: backend, certificate: cert, settings: .init(listen: "127.0.0.1", port: 0, perMinute: perMinute), onSeen: onSeen)
        var quiet = Logger(label: "local-api-test")
        quiet.logLevel = .critical
        try await withServedApplication(
            { onPort in try server.application(logger: quiet, onServerRunning: onPort) },
            body: { port in
                try await body(tokens, backend, "https://127.0.0.1:\(port)", cert.fingerprint)
            })
    }

    @Test func theControllersClientWorksAgainstTheRealServerAndATokenActsOnlyOnItsGuest() async throws {
        let seen = Mutex<Set<Int>>([])
        let record: @Sendable (Int) -> Void = { vmid in seen.withLock { _ = $0.insert(vmid) } }
        try await withServer(onSeen: record) { tokens, backend, url, fingerprint in
            let t120 = try tokens.issue(vmid: 120)
            let t121 = try tokens.issue(vmid: 121)
            let c120 = try AgentLocalAPIClient(url: url, fingerprint: fingerprint, token: t120)
            let c121 = try AgentLocalAPIClient(url: url, fingerprint: fingerprint, token: t121)
            backend.state.withLock { $0.due = [120] }
            #expect(try await c120.backupDue() == true)
            #expect(try await c121.backupDue() == false, "each token sees its own guest")
            let run = try await c120.startBackup()
            #expect(run.status == .running && run.id == "bk-120-1")
            #expect(try await c120.startBackup().id == run.id, "idempotent while running")
            #expect(try await c120.backupStatus(id: "bk-120-1").status == .running)
            // Another guest's run id is not found through this token.
            do {
                _ = try await c121.backupStatus(id: "bk-120-1")
                Issue.record("121 read 120's run")
            } catch { #expect("\(error)".contains("not_found"), "\(error)") }
            backend.finish(120, volid: "pbs-felhom:backup/ct/120/2026-11-30T02:00:00Z")
            let done = try await c120.backupStatus(id: "bk-120-1")
            #expect(done.status == .done && done.volid == "pbs-felhom:backup/ct/120/2026-11-30T02:00:00Z")
            // A re-issued token replaces the old one.
            _ = try tokens.issue(vmid: 121)
            do {
                _ = try await c121.backupDue()
                Issue.record("an old token still works")
            } catch { #expect("\(error)".contains("unauthorized") && !"\(error)".contains(t121.reveal()), "\(error)") }
        }
        #expect(seen.withLock { $0 } == [120, 121], "the healer hears of each guest's authenticated calls")
    }

    @Test func noTokenABadTokenAHugeBodyAndTooManyRequestsAreRefused() async throws {
        try await withServer(perMinute: 5) { tokens, _, url, fingerprint in
            let token = try tokens.issue(vmid: 130)
            let transport = try HTTPEndpoint(url: url, setting: "url").transport(
                trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: fingerprint)), timeout: .seconds(10))
            func call(_ method: String, _ path: String, auth: String?, body: Data? = nil) async throws -> (Int, String) {
                var headers: [(String, String)] = []
                if let auth { headers.append(("Authorization", auth)) }
                let r = try await transport.send(HTTPRequestSpec(method: method, target: path, headers: headers, body: body))
                return (r.status, String(decoding: r.body, as: UTF8.self))
            }
            var (status, text) = try await call("GET", "/backup/due", auth: nil)
            #expect(status == 401 && text.contains(#""code":"unauthorized""#))
            (status, _) = try await call("GET", "/backup/due", auth: "Bearer flg_not-a-real-token")
            #expect(status == 401)
            (status, text) = try await call("POST", "/backup", auth: "Bearer \(token.reveal())", body: Data(repeating: 0x41, count: 10_000))
            #expect(status == 413 && text.contains("too_large"), "\(text)")
            for _ in 0..<5 { _ = try await call("GET", "/backup/due", auth: "Bearer \(token.reveal())") }
            (status, text) = try await call("GET", "/backup/due", auth: "Bearer \(token.reveal())")
            #expect(status == 429 && text.contains("too_many_requests"), "\(text)")
        }
    }

    @Test func tokensAreStoredHashedAndSurviveARestart() throws {
        let dir = NSTemporaryDirectory() + "felhom-localapi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokens = try LocalTokens(path: dir + "/t.json")
        let token = try tokens.issue(vmid: 140)
        let stored = try String(contentsOfFile: dir + "/t.json", encoding: .utf8)
        #expect(!stored.contains(token.reveal()) && stored.contains("140"))
        let attrs = try FileManager.default.attributesOfItem(atPath: dir + "/t.json")
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect(try LocalTokens(path: dir + "/t.json").guest(for: token.reveal()) == 140)
        // A token issued by another process (felhom-agent local-api token) is seen by the running one.
        let other = try LocalTokens(path: dir + "/t.json")
        let issuedElsewhere = try other.issue(vmid: 141)
        #expect(tokens.guest(for: issuedElsewhere.reveal()) == 141)
        #expect(tokens.guest(for: token.reveal()) == 140, "and its own are kept")
        try tokens.revoke(vmid: 140)
        #expect(other.guest(for: issuedElsewhere.reveal()) == 141, "a change here does not drop the other's token")
        #expect(try LocalTokens(path: dir + "/t.json").guest(for: token.reveal()) == nil)
        try Data("{".utf8).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        #expect(throws: LocalAPIError.self) { _ = try LocalTokens(path: dir + "/bad.json") }
    }
}
