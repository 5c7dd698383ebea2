import Crypto
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import Logging
import PVESimulator
import Proxmox
import Testing

/// `escrow init` and the escrow drill with the simulator (its PBS storage starting without a key)
/// and a real hub on SQLite whose every log line is captured: the recovery code and the key stay on
/// the box — the hub's database file, its logs and its answers never contain them.
@Suite struct EscrowKeeperTests {
    let fast = EscrowEnvelope.KDFParams(n: 1 << 14, r: 8, p: 1)

    struct World {
        var sim: SimHarness
        var hub: RunningHub
        var op: HubClient
        var hostID: String
        var hostKey: Secret
        var database: String
        var lines: LogLines
        var dir: String

        func keeper(keyFile: String? = nil, params: EscrowEnvelope.KDFParams, operatorKey: Curve25519.KeyAgreement.PublicKey? = nil) throws
            -> EscrowKeeper
        {
            EscrowKeeper(
                stateDir: dir + "/state", keyFile: keyFile ?? dir + "/pbs-felhom.enc", storage: "pbs-felhom", pve: try sim.client(),
                backend: PrivilegedBackend(runner: SimCommandRunner(engine: sim.engine)), hub: try HubClient(url: hub.url, key: hostKey),
                hostID: hostID, params: params, operatorKey: operatorKey)
        }
        var storageKey: String? {
            get async { await sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" }?.encryptionKeyFingerprint }
        }
    }

    func withWorld(_ body: (World) async throws -> Void) async throws {
        let dir = NSTemporaryDirectory() + "felhom-escrow-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let database = dir + "/hub.sqlite"
        let lines = LogLines()
        var logger = Logger(label: "hub") { _ in CapturingLogHandler(lines: lines) }
        logger.logLevel = .trace
        let noKey: (inout SimState) -> Void = { state in
            if let i = state.storages.firstIndex(where: { $0.id == "pbs-felhom" }) { state.storages[i].encryptionKeyFingerprint = nil }
        }
        try await withSim(noKey) { sim in
            try await withRunningHub(adjust: { $0.database = "sqlite:" + database }, logger: logger) { hub in
                let op = try HubClient(url: hub.url, key: Secret(operatorKey))
                let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
                let (hostID, hostKey) = try await op.createHost(customerID: customer, name: "box")
                try await body(
                    World(sim: sim, hub: hub, op: op, hostID: hostID, hostKey: hostKey, database: database, lines: lines, dir: dir))
            }
        }
    }

    @Test func initMakesTheKeyOnTheBoxGivesItToPBSAndLeavesOnlyTheWrappedKeyWithTheHub() async throws {
        try await withWorld { w in
            let keeper = try w.keeper(params: fast)
            let first = try await keeper.initialize()
            let code = try #require(first.code, "a new envelope comes with its code")
            #expect(first.keyCreated && first.storageConfigured)
            let keyJSON = try #require(FileManager.default.contents(atPath: w.dir + "/pbs-felhom.enc"))
            let raw = try PBSKey.rawKey(json: keyJSON)
            #expect(await w.storageKey == first.fingerprint, "PVE shows the new key's fingerprint")
            let attrs = try FileManager.default.attributesOfItem(atPath: w.dir + "/pbs-felhom.enc")
            #expect((attrs[.posixPermissions] as? Int) == 0o600)

            // The hub's copy opens with the code — and only the box had the code.
            let bundle = try await w.op.recoveryBundle(hostID: w.hostID)
            let env = try EscrowEnvelope.decode(try #require(bundle["box_reported"]?["wrapped_escrow_key"]).serialized())
            #expect(try env.unwrap(code: code) == raw)
            #expect(bundle["box_reported"]?["pbs_fingerprint"]?.stringValue == first.fingerprint)

            // Again: idempotent, no new code, nothing reconfigured.
            let again = try await keeper.initialize()
            #expect(again.code == nil && !again.keyCreated && !again.storageConfigured && again.fingerprint == first.fingerprint)

            // The secrets are nowhere on the hub: database file, every log line, the bundle's text.
            let secrets = [
                code.printed, code.printed.replacingOccurrences(of: "-", with: ""), Data(raw).base64EncodedString(),
                raw.map { String(format: "%02x", $0) }.joined(),
            ]
            await w.hub.hub.store.close()  // flush SQLite (WAL) into the file before reading it
            let dbBytes = try Data(contentsOf: URL(fileURLWithPath: w.database))
            let wal = (try? Data(contentsOf: URL(fileURLWithPath: w.database + "-wal"))) ?? Data()
            let logText = w.lines.all.joined(separator: "\n")
            let answer = String(decoding: bundle.serialized(), as: UTF8.self)
            #expect(!logText.isEmpty, "the hub logged (at trace level)")
            for s in secrets {
                #expect(dbBytes.range(of: Data(s.utf8)) == nil && wal.range(of: Data(s.utf8)) == nil, "a secret is in the hub's database")
                #expect(!logText.contains(s), "a secret is in the hub's log")
                #expect(!answer.contains(s), "a secret is in an API answer")
            }
        }
    }

    @Test func rotateMakesANewCodeAndTheOldOneStopsOpeningTheHubsCopy() async throws {
        try await withWorld { w in
            let keeper = try w.keeper(params: fast)
            let old = try #require(try await keeper.initialize().code)
            let new = try #require(try await keeper.initialize(rotate: true).code)
            #expect(old != new)
            let bundle = try await w.op.recoveryBundle(hostID: w.hostID)
            let env = try EscrowEnvelope.decode(try #require(bundle["box_reported"]?["wrapped_escrow_key"]).serialized())
            #expect(throws: EscrowError.self) { try env.unwrap(code: old) }
            #expect(try PBSKey.fingerprint(rawKey: env.unwrap(code: new)) == env.keyFingerprint)
        }
    }

    /// The operator-managed tier (the documented exception): the key is wrapped to the operator
    /// escrow public key, no recovery code is made, the drill still proves the hub's copy, and
    /// only the operator's private key opens it. Moving a box to the customer tier makes a code.
    @Test func theOperatorManagedTierWrapsToTheOperatorsKeyWithoutACode() async throws {
        try await withWorld { w in
            let operatorKey = Curve25519.KeyAgreement.PrivateKey()
            let keeper = try w.keeper(params: fast, operatorKey: operatorKey.publicKey)
            let first = try await keeper.initialize()
            #expect(first.code == nil && first.wrappedNow)
            #expect(first.operatorKey == OperatorEscrowKey.fingerprint(operatorKey.publicKey.rawRepresentation))
            let raw = try PBSKey.rawKey(json: try #require(FileManager.default.contents(atPath: w.dir + "/pbs-felhom.enc")))
            let bundle = try await w.op.recoveryBundle(hostID: w.hostID)
            let env = try EscrowEnvelope.decode(try #require(bundle["box_reported"]?["wrapped_escrow_key"]).serialized())
            #expect(env.kdf == "x25519-hkdf-sha256" && env.isOperatorManaged)
            #expect(try env.unwrap(with: env.wrappingKey(operatorKey: operatorKey)) == raw)
            // Another operator key does not open it, and says whose key it needs; a code is the wrong tier.
            let stranger = Curve25519.KeyAgreement.PrivateKey()
            let foreign = #expect(throws: EscrowError.self) { try env.wrappingKey(operatorKey: stranger) }
            #expect(foreign?.code == .unwrapFailed && foreign?.message.contains(first.operatorKey ?? "?") == true)
            #expect((#expect(throws: EscrowError.self) { try env.unwrap(code: RecoveryCode.generate()) })?.code == .wrongTier)
            // The drill works the same way (the box keeps the derived wrapping key, never a private key).
            let drill = await keeper.drill(boxKey: first.fingerprint)
            #expect(drill.type == "escrow_verified", "\(drill)")
            // Idempotent; then the customer tier (no operator key): a new envelope under a new code.
            let again = try await keeper.initialize()
            #expect(!again.wrappedNow && again.code == nil)
            let customerTier = try w.keeper(params: fast)
            let moved = try await customerTier.initialize()
            let code = try #require(moved.code, "leaving the operator tier makes a recovery code")
            let newEnv = try EscrowEnvelope.decode(
                try #require(try await w.op.recoveryBundle(hostID: w.hostID)["box_reported"]?["wrapped_escrow_key"]).serialized())
            #expect(try newEnv.unwrap(code: code) == raw && !newEnv.isOperatorManaged)
            await w.hub.hub.store.close()
            let dbBytes = try Data(contentsOf: URL(fileURLWithPath: w.database))
            #expect(dbBytes.range(of: operatorKey.rawRepresentation) == nil && dbBytes.range(of: Data(raw)) == nil)
        }
    }

    @Test func aStorageWithAnotherKeyIsNeverOverwritten() async throws {
        try await withWorld { w in
            let foreign = PBSKey.generate()
            var st = try #require(await w.sim.engine.snapshot().storages.first { $0.id == "pbs-felhom" })
            st.encryptionKeyFingerprint = PBSKey.fingerprint(rawKey: foreign.rawKey)
            await w.sim.engine.setStorage(st)
            let mine = w.dir + "/mine.enc"
            try PBSKey.generate().json.write(to: URL(fileURLWithPath: mine))
            let keeper = try w.keeper(keyFile: mine, params: fast)
            do throws(EscrowError) {
                _ = try await keeper.initialize()
                Issue.record("initialized over another key")
            } catch {
                #expect(error.code == .fingerprintMismatch && error.message.contains("backup.key_file"), "\(error)")
            }
            #expect(await w.storageKey == PBSKey.fingerprint(rawKey: foreign.rawKey), "unchanged")
            // Nor replaced by a new key when the key file is missing.
            let missing = try w.keeper(keyFile: w.dir + "/nope.enc", params: fast)
            do throws(EscrowError) {
                _ = try await missing.initialize()
                Issue.record("made a new key over the storage's")
            } catch {
                #expect(error.code == .fingerprintMismatch && error.message.contains("lock the earlier backups away"), "\(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: w.dir + "/nope.enc"))
            #expect(await w.storageKey == PBSKey.fingerprint(rawKey: foreign.rawKey), "unchanged")
            let bundle = try await w.op.recoveryBundle(hostID: w.hostID)
            #expect(bundle["box_reported"]?["wrapped_escrow_key"] == .null, "nothing uploaded")
        }
    }

    @Test func theDrillProvesTheHubsCopyOpensToTheKeyInUseAndSaysWhyWhenNot() async throws {
        try await withWorld { w in
            let keeper = try w.keeper(params: fast)
            var r = await keeper.drill(boxKey: "00:11")
            #expect(r.type == "escrow_drill_failed" && r.data["reason"] == "not_initialized")
            let made = try await keeper.initialize()
            r = await keeper.drill(boxKey: made.fingerprint)
            #expect(r.type == "escrow_verified" && r.severity == .info, "\(r.data)")
            #expect(keeper.lastDrill != nil)
            // The box now backs up with another key: the hub's copy is stale.
            r = await keeper.drill(boxKey: PBSKey.fingerprint(rawKey: PBSKey.generate().rawKey))
            #expect(r.type == "escrow_drill_failed" && r.data["reason"] == "stale" && r.severity == .critical)
            // The hub's copy replaced by another envelope (a hostile or broken hub): it does not open.
            let (other, _) = try EscrowEnvelope.wrap(rawKey: PBSKey.generate().rawKey, code: RecoveryCode.generate(), params: fast)
            try await HubClient(url: w.hub.url, key: w.hostKey).reportRecovery(
                BoxRecoveryReport(storageManifest: .array([]), wrappedEscrowKey: try JSONValue.parse(other.encoded())))
            r = await keeper.drill(boxKey: made.fingerprint)
            #expect(r.type == "escrow_drill_failed" && r.data["reason"] == "unwrap_failed", "\(r.data)")
        }
    }
}
