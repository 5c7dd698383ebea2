import Crypto
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomGate
import FelhomHubClient
import FelhomSigning
import Foundation
import Testing

/// A/B self-update in a temp root: the agent's half (``AgentUpdater``) and the gate's
/// (``HealthGate``) on real files, with releases served from memory. The gate is exercised alone
/// too (it links none of the agent's code).
@Suite struct SelfUpdateTests {
    static let releaseKey = SSHPrivateKey.generateEd25519(comment: "release")
    static let otherKey = SSHPrivateKey.generateEd25519(comment: "not pinned")

    struct Release {
        var view: ReleaseView
        var asset: [UInt8]
    }

    static func release(_ version: String, asset: [UInt8]? = nil, served: [UInt8]? = nil, key: SSHPrivateKey = releaseKey) throws -> Release {
        let bytes = asset ?? Array("#!/bin/sh\necho felhom-agent \(version)\n".utf8)
        let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        let m = ReleaseManifest(
            component: .agent, version: version, sha256: digest, size: Int64(bytes.count), createdAt: Date(timeIntervalSince1970: 1_767_000_000))
        let text = try m.canonicalBytes()
        let sig = try key.sign(message: text, namespace: ReleaseManifest.namespace).armored
        return Release(
            view: ReleaseView(
                component: "agent", version: version, sha256: digest, size: m.size, manifest: String(decoding: text, as: UTF8.self), signature: sig,
                signer: key.publicKey.fingerprint, createdAt: m.createdAt, uploadedAt: m.createdAt),
            asset: served ?? bytes)
    }

    /// A temp A/B root whose slot a runs `running`, a journal, and an updater fed from `releases`.
    struct Box {
        let dir: String
        let root: UpdateRoot
        let journal: Journal
        let clock = ManualClock()
        let updater: AgentUpdater

        init(running: String = "1.0.0", releases: [String: Release], reserve: Int64 = 0) throws {
            dir = NSTemporaryDirectory() + "selfupdate-\(UUID().uuidString)"
            root = UpdateRoot(path: dir + "/agent")
            try FileManager.default.createDirectory(atPath: root.slotDirectory("a"), withIntermediateDirectories: true)
            try Data("old binary".utf8).write(to: URL(fileURLWithPath: root.executable(in: "a")))
            try root.point(at: "a")
            journal = try Journal(path: dir + "/journal.jsonl", clock: clock)
            let signer = PinnedSigner(name: "release", key: SelfUpdateTests.releaseKey.publicKey)
            updater = AgentUpdater(
                settings: SelfUpdateSettings(root: root.path, releaseSigners: [signer], windowSeconds: 300, settleSeconds: 60, reserveBytes: reserve),
                journal: journal,
                source: .init(
                    release: { v in
                        guard let r = releases[v] else {
                            throw HubClientError(code: "not_found", message: "release agent \(v) not found", status: 404)
                        }
                        return r.view
                    },
                    download: { v, sink in
                        guard let r = releases[v] else { throw HubClientError(code: "not_found", message: "no asset", status: 404) }
                        for piece in stride(from: 0, to: r.asset.count, by: 7) {
                            try r.asset[piece..<min(piece + 7, r.asset.count)].withUnsafeBytes { try sink($0) }
                        }
                    }),
                stateDir: dir, runningVersion: running, clock: clock)
        }
    }

    @Test func aGoodReleaseIsInstalledFlippedAndCommittedByTheGate() async throws {
        let r = try Self.release("1.1.0")
        let box = try Box(releases: ["1.1.0": r])
        defer { try? FileManager.default.removeItem(atPath: box.dir) }
        let (outcome, events) = await box.updater.consider(version: "1.1.0")
        #expect(outcome == .flipped("1.1.0") && events.isEmpty)
        #expect(box.root.currentSlot() == "b")
        #expect(FileManager.default.contents(atPath: box.root.executable(in: "b")).map([UInt8].init) == r.asset)
        #expect(FileManager.default.isExecutableFile(atPath: box.root.executable(in: "b")))
        let state = try #require(try box.root.readState())
        #expect(state.lastGood == "a" && state.committedVersion == "1.0.0" && state.pending?.version == "1.1.0")
        #expect(box.journal.entries(of: "agent-update-1.1.0#1").map(\.step) == ["begin", "downloading", "verified", "pending", "flipped"])
        // A second look while the gate decides: nothing is done again.
        #expect(await box.updater.consider(version: "1.1.0").0 == .awaitingGate)
        // The new agent reports healthy; after the settle period the gate commits.
        box.clock.advance(by: 10)
        try box.root.writeHealth(HealthRecord(version: "1.1.0", at: box.clock.now(), pid: 42))
        #expect(try HealthGate.check(root: box.root, now: box.clock.now(), restart: {}) == .waiting, "not settled yet")
        box.clock.advance(by: 60)
        try box.root.writeHealth(HealthRecord(version: "1.1.0", at: box.clock.now(), pid: 42))
        #expect(
            try HealthGate.check(root: box.root, now: box.clock.now(), restart: { Issue.record("no restart on commit") })
                == .committed(version: "1.1.0"))
        let committed = try #require(try box.root.readState())
        #expect(committed.lastGood == "b" && committed.committedVersion == "1.1.0" && committed.pending == nil)
        let verdict = box.updater.collectVerdict()
        #expect(verdict.map(\.type) == ["update_committed"] && verdict.first?.data["previous_version"] == "1.0.0")
        #expect(box.updater.collectVerdict().isEmpty, "said once")
        #expect(box.journal.isFinished("agent-update-1.1.0#1"))
    }

    @Test func aReleaseThatNeverBecomesHealthyIsRevertedAndNotTriedAgain() async throws {
        let box = try Box(releases: ["1.1.0": try Self.release("1.1.0")])
        defer { try? FileManager.default.removeItem(atPath: box.dir) }
        #expect(await box.updater.consider(version: "1.1.0").0 == .flipped("1.1.0"))
        // The old agent's health record (before the flip) does not count.
        box.clock.advance(by: 299)
        #expect(try HealthGate.check(root: box.root, now: box.clock.now(), restart: {}) == .waiting)
        box.clock.advance(by: 2)
        var restarted = 0
        let action = try HealthGate.check(root: box.root, now: box.clock.now(), restart: { restarted += 1 })
        guard case .reverted(let v, let slot, let reason) = action else {
            Issue.record("\(action)")
            return
        }
        #expect(v == "1.1.0" && slot == "a" && reason.contains("did not report healthy within 300 s") && restarted == 1)
        #expect(try box.root.currentSlot() == "a" && (box.root.readState())?.committedVersion == "1.0.0")
        let verdict = box.updater.collectVerdict()
        #expect(verdict.map(\.type) == ["update_reverted"] && verdict.first?.data["reason"]?.stringValue?.contains("300 s") == true)
        #expect(await box.updater.consider(version: "1.1.0").0 == .settled, "a reverted release is not retried")
    }

    @Test func aReleaseThatStartsAsAnotherVersionIsReverted() {
        let flipped = Date(timeIntervalSince1970: 1000)
        let state = GateState(
            lastGood: "a", committedVersion: "1.0.0",
            pending: .init(op: "x", slot: "b", version: "1.1.0", previous: "a", previousVersion: "1.0.0", flippedAt: flipped))
        let health = HealthRecord(version: "1.0.0", at: flipped.addingTimeInterval(5), pid: 1)
        #expect(HealthGate.decide(state: state, health: health, currentSlot: "b", now: flipped.addingTimeInterval(200)) == .wait)
        guard case .revert(let reason) = HealthGate.decide(state: state, health: health, currentSlot: "b", now: flipped.addingTimeInterval(301))
        else {
            Issue.record("expected a revert")
            return
        }
        #expect(reason.contains("says it is 1.0.0"))
        // Healthy once, then silent past the window: reverted, not committed.
        let once = HealthRecord(version: "1.1.0", at: flipped.addingTimeInterval(1), pid: 1)
        #expect(HealthGate.decide(state: state, health: once, currentSlot: "b", now: flipped.addingTimeInterval(50)) == .wait)
        #expect(HealthGate.decide(state: state, health: once, currentSlot: "b", now: flipped.addingTimeInterval(61)) == .commit)
        if case .revert = HealthGate.decide(state: state, health: once, currentSlot: "b", now: flipped.addingTimeInterval(400)) {
        } else {
            Issue.record("a stale health record past the window must revert")
        }
        // The flip never happened: reverted at the window's end.
        if case .revert(let r) = HealthGate.decide(state: state, health: nil, currentSlot: "a", now: flipped.addingTimeInterval(301)) {
            #expect(r.contains("never switched"))
        } else {
            Issue.record("expected a revert")
        }
        #expect(HealthGate.decide(state: GateState(lastGood: "a", committedVersion: nil), health: nil, currentSlot: "a", now: flipped) == .idle)
    }

    @Test func theGateAloneRevertsWithoutAnyAgentCode() throws {
        // Only the install root's files, as a crashed new agent leaves them.
        let dir = NSTemporaryDirectory() + "gate-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let root = UpdateRoot(path: dir)
        for slot in UpdateRoot.slots { try FileManager.default.createDirectory(atPath: root.slotDirectory(slot), withIntermediateDirectories: true) }
        try root.point(at: "b")
        let flipped = Date(timeIntervalSince1970: 5000)
        try root.writeState(
            GateState(
                lastGood: "a", committedVersion: "1.0.0",
                pending: .init(op: "op", slot: "b", version: "2.0.0", previous: "a", previousVersion: "1.0.0", flippedAt: flipped, windowSeconds: 30))
        )
        var restarts = 0
        #expect(try HealthGate.check(root: root, now: flipped.addingTimeInterval(10), restart: { restarts += 1 }) == .waiting)
        _ = try HealthGate.check(root: root, now: flipped.addingTimeInterval(31), restart: { restarts += 1 })
        #expect(root.currentSlot() == "a" && restarts == 1)
        #expect(try (root.readResult())?.outcome == .reverted && (root.readState())?.pending == nil)
        #expect(try HealthGate.check(root: root, now: flipped.addingTimeInterval(60), restart: { restarts += 1 }) == .idle && restarts == 1)
    }

    @Test func badInputIsRefusedAndTheRunningVersionIsUntouched() async throws {
        let good = try Self.release("1.2.0")
        let releases: [String: Release] = [
            "1.1.0": try Self.release("1.1.0", key: Self.otherKey),  // signed by a key the box does not pin
            "1.3.0": try Self.release("1.3.0", served: Array("#!/bin/sh\necho felhom-agent 6.6.6\n".utf8)),  // same size, other bytes
            "0.9.0": try Self.release("0.9.0"),  // a downgrade
            "1.2.0": good,
        ]
        let box = try Box(releases: releases)
        defer { try? FileManager.default.removeItem(atPath: box.dir) }
        func refusal(_ v: String) async -> String? {
            let (o, events) = await box.updater.consider(version: v)
            guard case .refused(let reason) = o else { return nil }
            #expect(events.map(\.type) == ["update_refused"] && events.first?.data["version"]?.stringValue == v)
            return reason
        }
        #expect(await refusal("1.1.0")?.contains("not a pinned key") == true)
        #expect(await refusal("1.3.0")?.contains("SHA-256") == true)
        #expect(await refusal("0.9.0")?.contains("agent.rollback") == true)
        #expect(await refusal("4.0.0")?.contains("has no agent release 4.0.0") == true)
        #expect(await refusal("not-a-version")?.contains("not a release version") == true)
        for v in ["1.1.0", "1.3.0", "0.9.0"] { #expect(await box.updater.consider(version: v).0 == .settled, "\(v) is not tried again") }
        #expect(try box.root.currentSlot() == "a" && (box.root.readState()) == nil)
        #expect(!FileManager.default.fileExists(atPath: box.root.executable(in: "b")))
        #expect(try (FileManager.default.contentsOfDirectory(atPath: box.root.slotDirectory("b"))).isEmpty, "no partial download left")

        // A full disk: refused before anything is written.
        let full = try Box(releases: ["1.2.0": good], reserve: Int64.max / 2)
        defer { try? FileManager.default.removeItem(atPath: full.dir) }
        let (o, _) = await full.updater.consider(version: "1.2.0")
        guard case .refused(let why) = o else {
            Issue.record("\(o)")
            return
        }
        #expect(why.contains("not enough space") && full.root.currentSlot() == "a")
    }

    @Test func aTruncatedDownloadIsDiscardedAndRetriedABoundedNumberOfTimes() async throws {
        var r = try Self.release("1.1.0")
        r.asset = Array(r.asset.dropLast(3))
        let box = try Box(releases: ["1.1.0": r])
        defer { try? FileManager.default.removeItem(atPath: box.dir) }
        for _ in 0..<AgentUpdater.maxAttempts {
            let (o, _) = await box.updater.consider(version: "1.1.0")
            guard case .deferred(let why) = o else {
                Issue.record("\(o)")
                return
            }
            #expect(why.contains("truncated"))
        }
        #expect(await box.updater.consider(version: "1.1.0").0 == .settled)
        #expect(try box.root.currentSlot() == "a" && (FileManager.default.contentsOfDirectory(atPath: box.root.slotDirectory("b"))).isEmpty)
    }

    @Test func aSignedRollbackAllowsExactlyThatOlderVersion() async throws {
        let box = try Box(running: "2.0.0", releases: ["1.9.0": try Self.release("1.9.0"), "1.8.0": try Self.release("1.8.0")])
        defer { try? FileManager.default.removeItem(atPath: box.dir) }
        try RollbackAuthorizations(stateDir: box.dir).authorize(.agent, version: "1.9.0")
        if case .refused = await box.updater.consider(version: "1.8.0").0 {} else { Issue.record("1.8.0 was not authorized") }
        #expect(await box.updater.consider(version: "1.9.0").0 == .flipped("1.9.0"))
    }

    @Test func anUpdateInterruptedBeforeTheFlipIsDiscardedAndRunAgain() async throws {
        let box = try Box(releases: ["1.1.0": try Self.release("1.1.0")])
        defer { try? FileManager.default.removeItem(atPath: box.dir) }
        // What a kill -9 mid-download leaves: the journal at `downloading` and a partial file.
        let partial = box.root.slotDirectory("b") + "/.felhom-agent.partial"
        try FileManager.default.createDirectory(atPath: box.root.slotDirectory("b"), withIntermediateDirectories: true)
        try Data("#!/bin/sh\nec".utf8).write(to: URL(fileURLWithPath: partial))
        try box.journal.append(op: "agent-update-1.1.0#1", kind: AgentUpdater.kind, step: "begin", data: ["version": "1.1.0", "slot": "b"])
        try box.journal.append(op: "agent-update-1.1.0#1", kind: AgentUpdater.kind, step: "downloading", data: ["partial": partial])
        box.updater.resume()
        #expect(!FileManager.default.fileExists(atPath: partial))
        #expect(box.journal.entries(of: "agent-update-1.1.0#1").last?.data["retry"] == "true")
        #expect(await box.updater.consider(version: "1.1.0").0 == .flipped("1.1.0"))
        #expect(box.journal.entries(of: "agent-update-1.1.0#2").last?.step == "flipped")
    }

    @Test func versionsOrderAsSemanticVersioning() throws {
        let ordered = [
            "0.9.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0",
        ]
        let parsed = try ordered.map { try #require(ReleaseVersion($0)) }
        for (a, b) in zip(parsed, parsed.dropFirst()) { #expect(a < b, "\(a) < \(b)") }
        #expect(ReleaseVersion("1.0.0+build.5") == ReleaseVersion("1.0.0"))
        for bad in ["1.0", "v1.0.0", "1.0.0\n", "1.0.0-", "01234567.0.0"] { #expect(ReleaseVersion(bad) == nil, "\(bad)") }
    }
}
