import Crypto
import FelhomAPI
import FelhomCore
import FelhomHubClient
import FelhomSigning
import Foundation
import ObjectStore

#if canImport(Glibc)
    import Glibc
#endif

/// Controller updates (SPEC §4, journaled op `controller.update`), driven by the agent from
/// outside the guest through its fenced privileged commands: a pre-update backup of the guest
/// (**the update is cancelled if it fails**), a PVE snapshot as a safety net, the previous binary
/// pulled out, the verified new one pushed and renamed into place, the controller restarted, and a
/// health check (it answers `--version` with the new version and calls the local API again within
/// the window). On failure the previous binary goes back and the controller is restarted. The
/// guest snapshot is kept either way; rolling the whole guest back to it needs an operator-signed
/// `guest.rollback` (it would lose customer data written since).
///
/// Steps: `begin` → `backed_up` → `snapshotted` → `pulled` → `pushed` → `done` | `compensated`.
/// After a crash, an update that reached `pushed` is rolled back (its health was never
/// confirmed); an earlier one is marked for another try.
public final class ControllerUpdater: Sendable {
    public static let kind = "controller.update"

    /// What is done to one guest, through the fenced backend, the PVE API and the backup runner.
    public struct Operations: Sendable {
        public var version: @Sendable (_ vmid: Int) async throws -> String
        public var backup: @Sendable (_ vmid: Int, _ label: String) async throws -> Void
        public var snapshot: @Sendable (_ vmid: Int, _ name: String) async throws -> Void
        public var pull: @Sendable (_ vmid: Int, _ destination: String) async throws -> Void
        public var push: @Sendable (_ vmid: Int, _ source: String) async throws -> Void
        public var install: @Sendable (_ vmid: Int) async throws -> Void
        public var restart: @Sendable (_ vmid: Int) async throws -> Void
        /// Whether the guest's controller called the local API after `since`.
        public var calledSince: @Sendable (_ vmid: Int, _ since: Date) -> Bool

        public init(
            version: @escaping @Sendable (Int) async throws -> String, backup: @escaping @Sendable (Int, String) async throws -> Void,
            snapshot: @escaping @Sendable (Int, String) async throws -> Void, pull: @escaping @Sendable (Int, String) async throws -> Void,
            push: @escaping @Sendable (Int, String) async throws -> Void, install: @escaping @Sendable (Int) async throws -> Void,
            restart: @escaping @Sendable (Int) async throws -> Void, calledSince: @escaping @Sendable (Int, Date) -> Bool
        ) {
            self.version = version
            self.backup = backup
            self.snapshot = snapshot
            self.pull = pull
            self.push = push
            self.install = install
            self.restart = restart
            self.calledSince = calledSince
        }
    }

    public struct Settings: Sendable {
        public var releaseSigners: [PinnedSigner]
        /// The new controller must be healthy within this many seconds of its restart (default 300).
        public var windowSeconds: Int
        /// Seconds between health looks (default 5).
        public var pollSeconds: Double
        public init(releaseSigners: [PinnedSigner], windowSeconds: Int = 300, pollSeconds: Double = 5) {
            self.releaseSigners = releaseSigners
            self.windowSeconds = windowSeconds
            self.pollSeconds = pollSeconds
        }
    }

    let settings: Settings
    let journal: Journal
    let source: AgentUpdater.Source
    let ops: Operations
    let cacheDir: String
    let rollbacks: RollbackAuthorizations
    let clock: WallClock
    let log: @Sendable (String) -> Void

    public init(
        settings: Settings, journal: Journal, source: AgentUpdater.Source, operations: Operations, stateDir: String,
        clock: WallClock = SystemWallClock(), log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.settings = settings
        self.journal = journal
        self.source = source
        self.ops = operations
        self.cacheDir = stateDir + "/controller-releases"
        self.rollbacks = RollbackAuthorizations(stateDir: stateDir)
        self.clock = clock
        self.log = log
    }

    /// Brings guest `vmid`'s controller to `version`. Events to post come back with the outcome.
    public func update(vmid: Int, to version: String) async -> (AgentUpdater.Outcome, [AgentEvent]) {
        let prefix = "controller-update-\(vmid)-\(version)#"
        let earlier = journal.allOperations().filter { $0.op.hasPrefix(prefix) }
        if earlier.contains(where: { !AgentUpdater.retryable($0.entries) }) || earlier.count >= AgentUpdater.maxAttempts { return (.settled, []) }
        let op = prefix + String(earlier.count + 1)
        guard let want = ReleaseVersion(version) else { return refuse(op: nil, vmid, version, "'\(version)' is not a release version") }
        let current: String
        do { current = try await ops.version(vmid) } catch { return (.deferred("cannot ask guest \(vmid)'s controller its version: \(error)"), []) }
        guard current != version else { return (.current, []) }
        if let have = ReleaseVersion(current), want < have, !rollbacks.allows(.controller, version: version) {
            return refuse(
                op: op, vmid, version,
                "\(version) is older than \(current), the version guest \(vmid) runs: a downgrade needs an operator-signed controller.rollback")
        }
        // The verified binary, cached per version.
        let binary: String
        do {
            guard let path = try await verifiedBinary(version) else {
                return refuse(op: op, vmid, version, "the hub has no controller release \(version)")
            }
            binary = path
        } catch let error as SignatureError {
            return refuse(op: op, vmid, version, "the release signature was refused: \(error)")
        } catch let error as ReleaseRefusal {
            return refuse(op: op, vmid, version, error.message)
        } catch {
            return (.deferred("cannot fetch controller release \(version): \(error)"), [])
        }
        let previous = cacheDir + "/previous-\(vmid)"
        let snapshot = Self.snapshotName(version)
        func step(_ name: String, _ data: [String: String] = [:]) throws { try journal.append(op: op, kind: Self.kind, step: name, data: data) }
        do { try step("begin", ["vmid": String(vmid), "version": version, "from": current]) } catch { return (.deferred("\(error)"), []) }
        // 1. The pre-update backup: no backup, no update.
        do { try await ops.backup(vmid, "controller-\(version)") } catch {
            return refuse(op: op, vmid, version, "the pre-update backup of guest \(vmid) failed (\(error)): the update was cancelled")
        }
        // 2. The safety net, and the binary in use kept for a roll-back.
        do {
            try step("backed_up")
            try await ops.snapshot(vmid, snapshot)
            try step("snapshotted", ["snapshot": snapshot])
            unlink(previous)
            try await ops.pull(vmid, previous)
            try step("pulled", ["previous": previous])
        } catch {
            return refuse(op: op, vmid, version, "could not prepare guest \(vmid) for the update (\(error)): the update was cancelled", retry: true)
        }
        // 3. The new controller in place, restarted.
        let restartedAt: Date
        do {
            try await ops.push(vmid, binary)
            try step("pushed", ["at": RFC3339.format(clock.now())])
            try await ops.install(vmid)
            try await ops.restart(vmid)
            // Only a call after the restart counts: the controller in use keeps calling the local
            // API until the restart stops it.
            restartedAt = clock.now()
        } catch {
            return await rollBack(op: op, vmid: vmid, version: version, from: current, previous: previous, snapshot: snapshot, reason: "\(error)")
        }
        // 4. Health within the window.
        let deadline = restartedAt.addingTimeInterval(TimeInterval(settings.windowSeconds))
        while clock.now() < deadline {
            if (try? await ops.version(vmid)) == version, ops.calledSince(vmid, restartedAt) {
                try? step("done", ["version": version])
                rollbacks.consume(.controller)
                log("controller of guest \(vmid): \(current) → \(version), healthy")
                let data: [String: JSONValue] = [
                    "component": "controller", "vmid": .int(Int64(vmid)), "version": .string(version), "previous_version": .string(current),
                    "snapshot": .string(snapshot),
                ]
                return (.flipped(version), [AgentEvent(type: "update_committed", severity: .info, data: data)])
            }
            try? await Task.sleep(for: .seconds(settings.pollSeconds))
        }
        return await rollBack(
            op: op, vmid: vmid, version: version, from: current, previous: previous, snapshot: snapshot,
            reason: "\(version) did not become healthy within \(settings.windowSeconds) s (no --version answer or no call to the local API)")
    }

    /// Puts the previous binary back and restarts the controller.
    func rollBack(op: String, vmid: Int, version: String, from current: String, previous: String, snapshot: String, reason: String) async -> (
        AgentUpdater.Outcome, [AgentEvent]
    ) {
        var data: [String: JSONValue] = [
            "component": "controller", "vmid": .int(Int64(vmid)), "version": .string(version), "previous_version": .string(current),
            "snapshot": .string(snapshot),
        ]
        do {
            try await ops.push(vmid, previous)
            try await ops.install(vmid)
            try await ops.restart(vmid)
        } catch {
            let why =
                "\(reason); putting \(current) back failed too (\(error)): the guest snapshot \(snapshot) is kept (guest.rollback needs a signed op)"
            try? journal.append(op: op, kind: Self.kind, step: "failed", data: ["reason": String(why.prefix(500)), "retry": "false"])
            data["reason"] = .string(why)
            log("controller of guest \(vmid): \(why)")
            return (.refused(why), [AgentEvent(type: "update_reverted", severity: .critical, data: data)])
        }
        try? journal.append(op: op, kind: Self.kind, step: "compensated", data: ["reason": String(reason.prefix(500))])
        data["reason"] = .string(reason)
        log("controller of guest \(vmid): \(version) rolled back to \(current): \(reason)")
        return (.refused(reason), [AgentEvent(type: "update_reverted", severity: .warning, data: data)])
    }

    /// After a restart: an update that pushed its binary is rolled back (health unconfirmed); one
    /// that did not is marked for another try.
    public func resume() async -> [AgentEvent] {
        var events: [AgentEvent] = []
        for (op, entries) in journal.inFlight() where entries.first?.kind == Self.kind {
            let first = entries.first?.data ?? [:]
            guard let vmid = Int(first["vmid"] ?? ""), let version = first["version"], let from = first["from"] else { continue }
            if entries.contains(where: { $0.step == "pushed" }) {
                let previous = entries.first { $0.step == "pulled" }?.data["previous"] ?? cacheDir + "/previous-\(vmid)"
                let snapshot = entries.first { $0.step == "snapshotted" }?.data["snapshot"] ?? Self.snapshotName(version)
                events += await rollBack(
                    op: op, vmid: vmid, version: version, from: from, previous: previous, snapshot: snapshot,
                    reason: "the agent restarted before \(version) was confirmed healthy"
                ).1
            } else {
                try? journal.append(
                    op: op, kind: Self.kind, step: "failed", data: ["reason": "interrupted before the new controller was pushed", "retry": "true"])
            }
        }
        return events
    }

    struct ReleaseRefusal: Error { var message: String }

    /// The verified binary of `version` in the cache (downloaded once, checked every time); nil
    /// when the hub has no such release.
    func verifiedBinary(_ version: String) async throws -> String? {
        let view: ReleaseView
        do { view = try await source.release(version) } catch let e as HubClientError where e.status == 404 { return nil }
        let manifest = try ReleaseVerifier(signers: settings.releaseSigners, clock: clock).verify(
            manifest: Array(view.manifest.utf8), signature: view.signature, component: .controller, version: version
        ).manifest
        let dir = cacheDir + "/" + version
        let path = dir + "/felhom-controller"
        if let data = FileManager.default.contents(atPath: path),
            SigV4.hex(SHA256.hash(data: data)) == manifest.sha256
        {
            return path
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let partial = path + ".partial"
        let digest = try await AgentUpdater.download(version, with: source.download, to: partial, limit: manifest.size)
        guard digest == manifest.sha256 else {
            unlink(partial)
            throw ReleaseRefusal(message: "the download's SHA-256 is \(digest), the signed manifest says \(manifest.sha256)")
        }
        guard rename(partial, path) == 0 else { throw ReleaseRefusal(message: "cannot keep \(path): \(String(cString: strerror(errno)))") }
        return path
    }

    func refuse(op: String?, _ vmid: Int, _ version: String, _ reason: String, retry: Bool = false) -> (AgentUpdater.Outcome, [AgentEvent]) {
        if let op {
            try? journal.append(
                op: op, kind: Self.kind, step: "failed", data: ["reason": String(reason.prefix(500)), "retry": retry ? "true" : "false"])
        }
        log("controller update of guest \(vmid) to \(version) refused: \(reason)")
        let data: [String: JSONValue] = [
            "component": "controller", "vmid": .int(Int64(vmid)), "version": .string(version), "reason": .string(reason),
        ]
        return (.refused(reason), [AgentEvent(type: "update_refused", severity: .warning, data: data)])
    }

    /// A PVE snapshot name for the pre-update safety net (`[A-Za-z][A-Za-z0-9_-]`, at most 40).
    static func snapshotName(_ version: String) -> String {
        let safe = version.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") ? $0 : "_" }
        return String(("felhom-pre-" + String(safe)).prefix(40))
    }
}
