import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import Proxmox
import Synchronization
import Testing

/// `pct push` as the fenced backend runs it, with the pushed file's bytes read at call time.
final class PushRecorder: CommandRunner {
    let pushes = Mutex<[(args: [String], bytes: Data, mode: Int)]>([])
    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        let source = arguments.count > 2 ? arguments[2] : ""
        let bytes = FileManager.default.contents(atPath: source) ?? Data()
        let mode = ((try? FileManager.default.attributesOfItem(atPath: source))?[.posixPermissions] as? Int) ?? -1
        pushes.withLock { $0.append(([executable] + arguments, bytes, mode)) }
        return CommandResult(exitCode: 0, stdout: "")
    }
}

@Suite struct GuestCredentialsTests {
    /// A provisioned guest gets its controller config pushed into it: the hub key the hub issued for
    /// it (it works), a local API token that maps to exactly this guest, the agent's URL and
    /// certificate fingerprint; the staged copy was 0600 and is gone afterwards.
    @Test func aNewGuestReceivesItsControllerConfigThroughPctPush() async throws {
        try await withAgentWorld { w in
            let recorder = PushRecorder()
            let tokens = try LocalTokens(path: w.stateDir + "-tokens.json")
            let credentials = GuestCredentials(
                hubURL: w.hubURL, hubFingerprint: nil, agentURL: "https://10.0.0.1:8787", agentFingerprint: "AA:BB", tokens: tokens,
                backend: PrivilegedBackend(runner: recorder), stagingDir: w.stateDir + "/push")
            let agent = try await w.agent(credentials: credentials)
            let web = DesiredState.Guest(
                vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "customer apps: photos, passwords")
            let db = DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped)
            let photos = DesiredState.Guest(vmid: 140, name: "photos", cpu: 1, memoryMB: 512, diskGB: 4, runState: .running)
            try await w.publish([web, db, photos])
            try await agent.cycle()
            let push = try #require(recorder.pushes.withLock { $0.first })
            #expect(Array(push.args.prefix(3)) == ["pct", "push", "140"] && push.args[4] == "/etc/felhom/controller.json")
            #expect(push.mode == 0o600, "staged 0600")
            #expect(!FileManager.default.fileExists(atPath: push.args[3]), "the staged copy is removed")
            let doc = try JSONValue.parse(push.bytes)
            #expect(doc["agent"]?["url"] == "https://10.0.0.1:8787" && doc["agent"]?["fingerprint"] == "AA:BB")
            let token = try #require(doc["agent"]?["token"]?.stringValue)
            #expect(tokens.guest(for: token) == 140)
            #expect(!(try String(contentsOfFile: w.stateDir + "-tokens.json", encoding: .utf8)).contains(token), "stored hashed")
            let guestID = try #require(doc["hub"]?["guest_id"]?.stringValue)
            let key = try #require(doc["hub"]?["key"]?.stringValue)
            #expect(doc["hub"]?["url"]?.stringValue == w.hubURL)
            // The key is the guest's own: the hub takes a report from it.
            let asGuest = try HubClient(url: w.hubURL, key: Secret(key))
            let report = GuestReport(reportedAt: Date(), controllerVersion: "test", stacks: [], telemetry: [], logIssues: [], storagePaths: [])
            _ = try await asGuest.postGuestReport(report)
            #expect(try await asGuest.controllerConfig(guestID: guestID)["guest"] != nil)
        }
    }
}
