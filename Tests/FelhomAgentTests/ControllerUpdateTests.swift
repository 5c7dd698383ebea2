import Crypto
import FelhomAPI
import FelhomAgent
import FelhomCore
import FelhomHubClient
import FelhomSigning
import Foundation
import Synchronization
import Testing

struct GuestFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// `controller.update` step by step against a guest double whose controller "binary" is the bytes
/// pushed into it: its `--version` is read from them, and a broken one never calls the local API.
@Suite struct ControllerUpdateTests {
    static let key = SSHPrivateKey.generateEd25519(comment: "release")

    static func asset(_ version: String, broken: Bool = false) -> [UInt8] {
        Array("#!/bin/sh\n# felhom-controller \(version)\(broken ? " broken" : "")\n".utf8)
    }

    static func release(_ version: String, broken: Bool = false) throws -> (ReleaseView, [UInt8]) {
        let bytes = asset(version, broken: broken)
        let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        let m = ReleaseManifest(
            component: .controller, version: version, sha256: digest, size: Int64(bytes.count), createdAt: Date(timeIntervalSince1970: 1_767_000_000))
        let text = try m.canonicalBytes()
        let view = ReleaseView(
            component: "controller", version: version, sha256: digest, size: m.size, manifest: String(decoding: text, as: UTF8.self),
            signature: try key.sign(message: text, namespace: ReleaseManifest.namespace).armored, signer: key.publicKey.fingerprint,
            createdAt: m.createdAt,
            uploadedAt: m.createdAt)
        return (view, bytes)
    }

    /// One guest: its installed controller, what was pushed, the steps taken.
    final class Guest: Sendable {
        struct State {
            var installed: [UInt8]
            var staged: [UInt8]?
            var lastCall: Date?
            var steps: [String] = []
            var backupFails = false
        }
        let state: Mutex<State>
        let clock: ManualClock
        init(installed: [UInt8], clock: ManualClock) {
            state = Mutex(State(installed: installed))
            self.clock = clock
        }
        var installed: String { state.withLock { String(decoding: $0.installed, as: UTF8.self) } }
        var steps: [String] { state.withLock { $0.steps } }

        func operations() -> ControllerUpdater.Operations {
            .init(
                version: { _ in
                    let text = self.installed
                    guard let v = text.split(separator: " ").dropFirst(2).first else { throw GuestFailure(message: "no version") }
                    return String(v.split(separator: "\n")[0])
                },
                backup: { _, _ in
                    try self.state.withLock { s in
                        s.steps.append("backup")
                        if s.backupFails { throw GuestFailure(message: "PBS datastore is full") }
                    }
                },
                snapshot: { _, name in self.state.withLock { $0.steps.append("snapshot \(name)") } },
                pull: { _, dest in
                    let bytes = self.state.withLock { s in
                        s.steps.append("pull")
                        return s.installed
                    }
                    try Data(bytes).write(to: URL(fileURLWithPath: dest))
                },
                push: { _, source in
                    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: source)))
                    let now = self.clock.now()
                    self.state.withLock {
                        $0.steps.append("push")
                        $0.staged = bytes
                        // The controller in use keeps calling the local API until it is restarted.
                        $0.lastCall = now.addingTimeInterval(0.5)
                    }
                },
                install: { _ in
                    self.state.withLock { s in
                        s.steps.append("install")
                        if let b = s.staged { s.installed = b }
                        s.staged = nil
                    }
                },
                restart: { _ in
                    self.clock.advance(by: 1)  // stopping the old controller takes a moment
                    let now = self.clock.now()
                    self.state.withLock { s in
                        s.steps.append("restart")
                        // A good controller calls the local API once it runs; a broken one never does.
                        // (The agent remembers the old controller's last call.)
                        if !String(decoding: s.installed, as: UTF8.self).contains("broken") { s.lastCall = now.addingTimeInterval(1) }
                    }
                },
                calledSince: { _, since in self.state.withLock { $0.lastCall.map { $0 > since } ?? false } })
        }
    }

    struct World {
        let dir: String
        let journal: Journal
        let clock = ManualClock()
        let guest: Guest
        let updater: ControllerUpdater

        init(releases: [String: (ReleaseView, [UInt8])], running: String = "1.0.0") throws {
            dir = NSTemporaryDirectory() + "ctl-update-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            journal = try Journal(path: dir + "/journal.jsonl", clock: clock)
            guest = Guest(installed: ControllerUpdateTests.asset(running), clock: clock)
            let clock = self.clock
            updater = ControllerUpdater(
                settings: .init(
                    releaseSigners: [PinnedSigner(name: "release", key: ControllerUpdateTests.key.publicKey)], windowSeconds: 30, pollSeconds: 0),
                journal: journal,
                source: .init(
                    release: { v in
                        guard let r = releases[v] else { throw HubClientError(code: "not_found", message: "no release", status: 404) }
                        return r.0
                    },
                    download: { v, sink in
                        guard let r = releases[v] else { throw HubClientError(code: "not_found", message: "no asset", status: 404) }
                        clock.advance(by: 0)
                        try r.1.withUnsafeBytes { try sink($0) }
                    }),
                operations: guest.operations(), stateDir: dir, clock: clock)
        }
    }

    @Test func aGoodReleaseIsBackedUpSnapshottedPushedAndCommitted() async throws {
        let w = try World(releases: ["1.1.0": try Self.release("1.1.0")])
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        let (outcome, events) = await w.updater.update(vmid: 120, to: "1.1.0")
        #expect(outcome == .flipped("1.1.0"), "\(outcome)")
        #expect(w.guest.steps == ["backup", "snapshot felhom-pre-1_1_0", "pull", "push", "install", "restart"])
        #expect(w.guest.installed.contains("felhom-controller 1.1.0"))
        #expect(events.map(\.type) == ["update_committed"] && events.first?.data["previous_version"] == "1.0.0")
        #expect(await w.updater.update(vmid: 120, to: "1.1.0").0 == .settled)
    }

    @Test func aBrokenReleaseIsRolledBackAndTheSnapshotKept() async throws {
        let w = try World(releases: ["1.1.0": try Self.release("1.1.0", broken: true)])
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        // The health loop sees no call; time passes past the window.
        let ticker = Task {
            for _ in 0..<2000 {
                w.clock.advance(by: 1)
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        let (outcome, events) = await w.updater.update(vmid: 120, to: "1.1.0")
        ticker.cancel()
        guard case .refused(let reason) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(reason.contains("did not become healthy within 30 s"))
        #expect(w.guest.installed.contains("felhom-controller 1.0.0"), "the previous controller is back")
        #expect(Array(w.guest.steps.suffix(3)) == ["push", "install", "restart"])
        #expect(events.map(\.type) == ["update_reverted"] && events.first?.data["snapshot"] == "felhom-pre-1_1_0")
    }

    @Test func aFailingPreUpdateBackupCancelsTheUpdate() async throws {
        let w = try World(releases: ["1.1.0": try Self.release("1.1.0")])
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        w.guest.state.withLock { $0.backupFails = true }
        let (outcome, events) = await w.updater.update(vmid: 120, to: "1.1.0")
        guard case .refused(let reason) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(reason.contains("pre-update backup") && reason.contains("cancelled") && reason.contains("PBS datastore is full"))
        #expect(w.guest.steps == ["backup"], "nothing else was touched")
        #expect(w.guest.installed.contains("1.0.0") && events.map(\.type) == ["update_refused"])
    }

    @Test func downgradesBadSignaturesAndUnknownReleasesAreRefused() async throws {
        var forged = try Self.release("1.2.0")
        forged.1 = Self.asset("6.6.6")
        let w = try World(releases: ["0.9.0": try Self.release("0.9.0"), "1.2.0": forged], running: "1.0.0")
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        for (v, words) in [("0.9.0", "controller.rollback"), ("1.2.0", "SHA-256"), ("3.0.0", "has no controller release")] {
            let (o, events) = await w.updater.update(vmid: 120, to: v)
            guard case .refused(let reason) = o else {
                Issue.record("\(v): \(o)")
                continue
            }
            #expect(reason.contains(words), "\(v): \(reason)")
            #expect(events.map(\.type) == ["update_refused"])
        }
        #expect(w.guest.steps.isEmpty && w.guest.installed.contains("1.0.0"))
        try RollbackAuthorizations(stateDir: w.dir).authorize(.controller, version: "0.9.0")
        // Authorized, but already refused once for this version: a new decision needs a new version.
        #expect(await w.updater.update(vmid: 121, to: "0.9.0").0 == .flipped("0.9.0"))
    }

    @Test func anUpdateInterruptedAfterThePushIsRolledBackOnRestart() async throws {
        let w = try World(releases: ["1.1.0": try Self.release("1.1.0")])
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        let previous = w.dir + "/controller-releases/previous-120"
        try FileManager.default.createDirectory(atPath: w.dir + "/controller-releases", withIntermediateDirectories: true)
        try Data(Self.asset("1.0.0")).write(to: URL(fileURLWithPath: previous))
        // What a kill -9 right after the push leaves: the guest runs 1.1.0 unconfirmed.
        w.guest.state.withLock { $0.installed = Self.asset("1.1.0") }
        let op = "controller-update-120-1.1.0#1"
        try w.journal.append(op: op, kind: ControllerUpdater.kind, step: "begin", data: ["vmid": "120", "version": "1.1.0", "from": "1.0.0"])
        try w.journal.append(op: op, kind: ControllerUpdater.kind, step: "pulled", data: ["previous": previous])
        try w.journal.append(op: op, kind: ControllerUpdater.kind, step: "pushed", data: [:])
        let events = await w.updater.resume()
        #expect(events.map(\.type) == ["update_reverted"] && w.guest.installed.contains("1.0.0"))
        #expect(w.journal.entries(of: op).last?.step == "compensated")
    }
}
