import FelhomAgent
import FelhomController
import FelhomCore
import FelhomHTTP
import FelhomTestSupport
import Foundation
import Logging
import PVESimulator
import Proxmox
import Synchronization
import Testing

/// The backup path with real parts: the controller's quiesce loop and client, the agent's local API
/// server and backup coordinator, vzdump on the simulator to the encrypted PBS storage.
@Suite struct AgentBackupsTests {
    final class Finished: Sendable {
        let results = Mutex<[BackupRunner.Result]>([])
    }

    func withBackups(
        appBound: TimeInterval = 900, _ body: (SimHarness, AgentBackups, LocalTokens, String, String, Journal, Finished) async throws -> Void
    ) async throws {
        try await withSim { h in
            let dir = NSTemporaryDirectory() + "felhom-agent-backups-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let journal = try Journal(path: dir + "/journal.jsonl")
            let key = try #require(await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint)
            let runner = BackupRunner(
                pve: try h.client(), node: "pve1", queue: GuestQueue(), journal: journal, storage: "pbs-felhom", boxKey: key,
                taskTimeout: .seconds(30))
            let finished = Finished()
            let backups = AgentBackups(runner: runner, appBound: appBound) { r in finished.results.withLock { $0.append(r) } }
            let tokens = try LocalTokens(path: dir + "/tokens.json")
            let cert = try TLSMaterial.selfSigned(commonName: "felhom-agent", names: ["127.0.0.1"])
            let server = LocalAPIServer(tokens: tokens, backend: backups, certificate: cert, settings: .init(listen: "127.0.0.1", port: 0))
            var quiet = Logger(label: "agent-backups-test")
            quiet.logLevel = .critical
            try await withServedApplication(
                { onPort in try server.application(logger: quiet, onServerRunning: onPort) },
                body: { port in
                    try await body(h, backups, tokens, "https://127.0.0.1:\(port)", cert.fingerprint, journal, finished)
                    await backups.drain()
                })
        }
    }

    @Test func theControllersQuiesceDrivesAnAppConsistentEncryptedBackup() async throws {
        try await withBackups { h, backups, tokens, url, fingerprint, journal, finished in
            let client = try AgentLocalAPIClient(url: url, fingerprint: fingerprint, token: try tokens.issue(vmid: 101))
            let w = try QuiesceWorld()
            let compose = FakeCompose(running: ["a": true, "b": true, "c": true, "traefik": true])
            let quiescer = Quiescer(
                stacks: Stacks(directory: w.stacksDir, protectedNames: ["traefik"], runtime: compose), agent: client, stateDir: w.stateDir,
                settings: .init(pollInterval: .milliseconds(50), maxQuiesce: .seconds(30)))
            #expect(try await quiescer.runIfDue() == .notDue, "nothing is due before the schedule says so")
            do {
                _ = try await client.startBackup()
                Issue.record("a backup started without being due")
            } catch { #expect("\(error)".contains("conflict"), "\(error)") }
            backups.markDue([101], window: "2026-11-30")
            let outcome = try await quiescer.runIfDue()
            guard case .done(let volid?) = outcome else {
                Issue.record("outcome \(outcome)")
                return
            }
            #expect(volid.hasPrefix("pbs-felhom:backup/ct/101/"))
            #expect(compose.log == ["stop a", "stop b", "stop c", "start c", "start b", "start a"], "exactly the app stacks, restarted")
            let result = try #require(finished.results.withLock { $0.first })
            #expect(result.consistency == .app && result.failure == nil && result.encrypted != nil)
            #expect(journal.entries(of: result.op).last?.data["consistency"] == "app")
            #expect(try await client.backupDue() == false, "done for this window")
            backups.markDue([101], window: "2026-11-30")
            #expect(try await client.backupDue() == false, "not again in the same window")
            #expect(await h.engine.snapshot().volumes.filter { $0.vmid == 101 && $0.content == "backup" }.count == 1)
        }
    }

    @Test func aGuestWhoseControllerNeverCallsIsBackedUpCrashConsistent() async throws {
        try await withBackups(appBound: 0) { _, backups, _, _, _, _, finished in
            backups.markDue([100, 101], window: "w", now: Date(timeIntervalSinceNow: -1))
            #expect(backups.runOverdue() == [100, 101])
            await backups.drain()
            let results = finished.results.withLock { $0 }.sorted { $0.vmid < $1.vmid }
            #expect(results.map(\.vmid) == [100, 101] && results.allSatisfy { $0.consistency == .crash && $0.failure == nil })
            #expect(backups.runOverdue().isEmpty, "nothing due any more")
        }
    }

    @Test func aFailedBackupIsReportedAndNotRetriedInALoop() async throws {
        try await withBackups(appBound: 0) { h, backups, tokens, url, fingerprint, _, finished in
            var st = try #require(await h.engine.snapshot().storages.first { $0.id == "pbs-felhom" })
            st.active = false
            await h.engine.setStorage(st)
            let client = try AgentLocalAPIClient(url: url, fingerprint: fingerprint, token: try tokens.issue(vmid: 101))
            backups.markDue([101], window: "w")
            let run = try await client.startBackup()
            await backups.drain()
            let status = try await client.backupStatus(id: run.id ?? "")
            #expect(status.status == .failed && status.reason == "storage_unreachable", "\(status)")
            #expect(finished.results.withLock { $0.first?.failure?.code } == .storageUnreachable)
            backups.markDue([101], window: "w")
            #expect(try await client.backupDue() == false, "retried in the next window, not now")
            backups.markDue([101], window: "w2")
            #expect(try await client.backupDue() == true)
        }
    }
}
