import FelhomAgent
import FelhomController
import FelhomCore
import FelhomHTTP
import FelhomSigning
import FelhomTestSupport
import Foundation
import Logging
import PVESimulator
import Proxmox
import Testing

/// `POST /rollback` of the real local API, with a real agent (pinned operator key, durable
/// nonces, journal), the simulator and a hub: a controller hands in an operator-signed
/// `guest.rollback` for its own guest; everything else is refused before anything runs.
@Suite struct LocalRollbackTests {
    struct Served {
        var url: String
        var fingerprint: String
        var tokens: LocalTokens
    }

    func withLocalAPI(_ agent: Agent, _ body: (Served) async throws -> Void) async throws {
        let dir = NSTemporaryDirectory() + "felhom-lr-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokens = try LocalTokens(path: dir + "/local-api-tokens.json")
        let cert = try TLSMaterial.selfSigned(commonName: "felhom-agent", names: ["127.0.0.1"])
        let backups = try #require(agent.backups)
        let server = LocalAPIServer(
            tokens: tokens, backend: backups, certificate: cert, settings: .init(listen: "127.0.0.1", port: 0), rollbacks: agent.localRollbacks)
        var quiet = Logger(label: "lr")
        quiet.logLevel = .critical
        try await withServedApplication(
            { onPort in try server.application(logger: quiet, onServerRunning: onPort) },
            body: { port in try await body(Served(url: "https://127.0.0.1:\(port)", fingerprint: cert.fingerprint, tokens: tokens)) })
    }

    /// Signs `op` for `vmid` with `key` as `felhom sign` would.
    func signed(_ w: AgentWorld, _ op: OpBlob.Op, vmid: String, params: [String: JSONValue], key: SSHPrivateKey, ttl: TimeInterval = 600) throws
        -> RollbackRequest
    {
        let blob = try OpBlob.new(op: op, hostID: w.hostID, guestID: vmid, params: params, ttl: ttl, keyID: key.publicKey.fingerprint)
            .canonicalBytes()
        return RollbackRequest(
            blob: String(decoding: blob, as: UTF8.self), signature: try key.sign(message: blob, namespace: OpVerifier.namespace).armored)
    }

    func post(_ s: Served, token: Secret, _ body: RollbackRequest) async throws -> (Int, JSONValue?) {
        let transport = try HTTPEndpoint(url: s.url, setting: "url").transport(
            trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: s.fingerprint)), timeout: .seconds(20))
        let r = try await transport.send(
            HTTPRequestSpec(
                method: "POST", target: "/rollback", headers: [("Authorization", "Bearer \(token.reveal())")],
                body: try JSONEncoder().encode(body)))
        return (r.status, try? JSONValue.parse(r.body))
    }

    @Test func aSignedRollbackOfItsOwnGuestRunsOnceAndEverythingElseIsRefused() async throws {
        try await withAgentWorld { w in
            let agent = try await w.agent(backup: BackupSettings(boxKey: PBSKey.fingerprint(rawKey: Array(repeating: 1, count: 32))))
            let pve = try w.sim.client()
            _ = try await pve.waitTask(try await pve.createSnapshot(node: "pve1", vmid: 100, name: "before", description: nil))
            try await withLocalAPI(agent) { s in
                let t100 = try s.tokens.issue(vmid: 100)
                let good = try signed(w, .guestRollback, vmid: "100", params: ["snapshot": "before"], key: w.pinned)

                // Another guest's op, another kind of op, an unpinned key, a bad body: refused, nothing journaled.
                let other = try signed(w, .guestRollback, vmid: "101", params: ["snapshot": "before"], key: w.pinned)
                var (status, json) = try await post(s, token: t100, other)
                #expect(status == 403 && json?["error"]?["message"]?.stringValue?.contains("only roll back itself") == true)
                let destroy = try signed(w, .guestDestroy, vmid: "100", params: [:], key: w.pinned)
                (status, json) = try await post(s, token: t100, destroy)
                #expect(status == 403 && json?["error"]?["message"]?.stringValue?.contains("only guest.rollback") == true)
                let stranger = try signed(w, .guestRollback, vmid: "100", params: ["snapshot": "before"], key: .generateEd25519(comment: "x"))
                (status, json) = try await post(s, token: t100, stranger)
                #expect(status == 403 && json?["error"]?["message"]?.stringValue?.contains("does not pin") == true, "\(String(describing: json))")
                var tampered = good
                tampered.blob = tampered.blob.replacingOccurrences(of: "before", with: "beforx")
                (status, json) = try await post(s, token: t100, tampered)
                #expect(status == 403, "\(String(describing: json))")
                (status, _) = try await post(s, token: t100, RollbackRequest(blob: "{", signature: ""))
                #expect(status == 400)
                #expect(await w.sim.engine.snapshot().tasks.filter { $0.type == "vzrollback" }.isEmpty, "nothing rolled back yet")

                // The real one: 202, then done; the hub hears of it.
                (status, json) = try await post(s, token: t100, good)
                #expect(status == 202, "\(String(describing: json))")
                let id = try #require(json?["id"]?.stringValue)
                let client = try AgentLocalAPIClient(url: s.url, fingerprint: s.fingerprint, token: t100)
                var done = false
                for _ in 0..<200 where !done {
                    done = try await client.rollbackStatus(id: id).status == .done
                    if !done { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(done)
                #expect(await w.sim.engine.snapshot().tasks.filter { $0.type == "vzrollback" && $0.id == "100" }.count == 1)

                // Replayed: refused as such, nothing run again.
                (status, json) = try await post(s, token: t100, good)
                #expect(status == 409 && json?["error"]?["message"]?.stringValue?.hasPrefix("replayed") == true)
                #expect(await w.sim.engine.snapshot().tasks.filter { $0.type == "vzrollback" }.count == 1)
                // Another guest's token cannot read its status.
                let t101 = try s.tokens.issue(vmid: 101)
                await #expect(throws: (any Error).self) {
                    _ = try await AgentLocalAPIClient(url: s.url, fingerprint: s.fingerprint, token: t101).rollbackStatus(id: id)
                }
            }
            var events: [HubEvent] = []
            for _ in 0..<100 where events.isEmpty {
                events = try await w.op.events(hostID: w.hostID, type: "guest_rolled_back")
                if events.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(events.count == 1 && events.first?.data["snapshot"] == "before")
        }
    }
}
