import Crypto
import FelhomAPI
import FelhomCore
import FelhomGate
import FelhomHubClient
import FelhomSigning
import Foundation
import ObjectStore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Self-update settings (`update.*` in the agent config; docs/updates.md).
public struct SelfUpdateSettings: Sendable {
    /// The A/B install root (default `/opt/felhom/agent`).
    public var root: String
    /// Keys allowed to sign releases (allowed_signers syntax, namespace `felhom-release-v1`).
    public var releaseSigners: [PinnedSigner]
    /// The new agent must be healthy within this many seconds of the flip (default 300).
    public var windowSeconds: Int
    /// … and stay up this long before the gate commits it (default 60).
    public var settleSeconds: Int
    /// Free space to keep on the root's filesystem beyond the asset (default 64 MiB).
    public var reserveBytes: Int64

    public init(root: String, releaseSigners: [PinnedSigner], windowSeconds: Int = 300, settleSeconds: Int = 60, reserveBytes: Int64 = 64 << 20) {
        self.root = root
        self.releaseSigners = releaseSigners
        self.windowSeconds = windowSeconds
        self.settleSeconds = settleSeconds
        self.reserveBytes = reserveBytes
    }
}

/// The agent's half of A/B self-update (SPEC §4, journaled op `agent.update`): fetch the release
/// named by the desired state, verify it (pinned release keys, no downgrade without a signed
/// rollback, space, size, SHA-256), install it into the inactive slot, record the flip for the
/// gate, point `current` at it, and ask to exit so systemd starts the new binary. Keeping or
/// reverting it is the gate's decision (``HealthGate``, another process); this side reports the
/// verdict (`update_committed`, `update_reverted`) and writes the health record the gate reads.
///
/// Journal steps: `begin` → `downloading` → `verified` → `pending` → `flipped`, then `done`
/// (committed) or `compensated` (reverted). After a crash before `flipped` the partial download
/// is discarded and the update is tried again (at most ``maxAttempts`` times); after `flipped` the
/// gate decides. A refusal (bad signature or checksum, downgrade, no such release) is final for
/// that version: the box does not try it again.
public final class AgentUpdater: Sendable {
    public static let kind = "agent.update"
    public static let maxAttempts = 3

    /// Where the release comes from (the hub, through ``HubClient`` in production).
    public struct Source: Sendable {
        public typealias Download =
            @Sendable (_ version: String, _ sink: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) async throws -> Void
        public var release: @Sendable (_ version: String) async throws -> ReleaseView
        public var download: @Sendable (_ version: String, _ sink: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) async throws -> Void
        public init(
            release: @escaping @Sendable (String) async throws -> ReleaseView,
            download: @escaping @Sendable (String, @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) async throws -> Void
        ) {
            self.release = release
            self.download = download
        }
    }

    /// What ``consider(version:)`` did.
    public enum Outcome: Sendable, Equatable {
        /// Already running that version.
        case current
        /// An earlier flip awaits the gate.
        case awaitingGate
        /// Decided before (refused, reverted or out of attempts): not tried again.
        case settled
        /// Refused with this reason (an `update_refused` event was made).
        case refused(String)
        /// Could not be done now (the hub unreachable): tried again next cycle.
        case deferred(String)
        /// `current` points at the new slot: exit so systemd starts it.
        case flipped(String)
    }

    public let settings: SelfUpdateSettings
    public let root: UpdateRoot
    let journal: Journal
    let source: Source
    let rollbacks: RollbackAuthorizations
    let runningVersion: String
    let clock: WallClock
    let log: @Sendable (String) -> Void

    public init(
        settings: SelfUpdateSettings, journal: Journal, source: Source, stateDir: String, runningVersion: String,
        clock: WallClock = SystemWallClock(),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.settings = settings
        self.root = UpdateRoot(path: settings.root)
        self.journal = journal
        self.source = source
        self.rollbacks = RollbackAuthorizations(stateDir: stateDir)
        self.runningVersion = runningVersion
        self.clock = clock
        self.log = log
    }

    // MARK: - The update

    /// Brings the agent to `version` if it is not running it. Events to post come back with the outcome.
    public func consider(version: String) async -> (Outcome, [AgentEvent]) {
        guard version != runningVersion else { return (.current, []) }
        let state: GateState?
        do { state = try root.readState() } catch { return (.deferred("gate.json: \(error)"), []) }
        if state?.pending != nil { return (.awaitingGate, []) }
        guard let want = ReleaseVersion(version) else { return refuse(op: nil, version, "'\(version)' is not a release version") }
        let prefix = "agent-update-\(version)#"
        let earlier = journal.allOperations().filter { $0.op.hasPrefix(prefix) }
        if earlier.contains(where: { !Self.retryable($0.entries) }) || earlier.count >= Self.maxAttempts { return (.settled, []) }
        let op = prefix + String(earlier.count + 1)
        guard let current = root.currentSlot() else {
            return refuse(op: op, version, "this agent is not installed in an A/B root: no '\(root.currentLink)' link (see docs/updates.md)")
        }
        // No silent downgrade: older than what this box last committed (or runs) needs a signed rollback.
        let floorText = state?.committedVersion ?? runningVersion
        if let floor = ReleaseVersion(floorText) ?? ReleaseVersion(runningVersion), want < floor, !rollbacks.allows(.agent, version: version) {
            return refuse(
                op: op, version,
                "\(version) is older than \(floor.description), the version this box committed: a downgrade needs an operator-signed agent.rollback")
        }
        // Fetch and verify before anything is written.
        let view: ReleaseView
        do { view = try await source.release(version) } catch let e as HubClientError where e.status == 404 {
            return refuse(op: op, version, "the hub has no agent release \(version)")
        } catch {
            return (.deferred("cannot fetch release \(version): \(error)"), [])
        }
        let manifest: ReleaseManifest
        do {
            manifest = try ReleaseVerifier(signers: settings.releaseSigners, clock: clock).verify(
                manifest: Array(view.manifest.utf8), signature: view.signature, component: .agent, version: version
            ).manifest
        } catch {
            return refuse(op: op, version, "the release signature was refused: \(error)")
        }
        // The space where the download goes: the inactive slot (it may be a file system of its own).
        let slot = UpdateRoot.other(current)
        let landing = FileManager.default.fileExists(atPath: root.slotDirectory(slot)) ? root.slotDirectory(slot) : root.path
        if let free = Self.freeBytes(landing), free < manifest.size + settings.reserveBytes {
            return refuse(
                op: op, version,
                "not enough space in \(landing): \(manifest.size) bytes plus \(settings.reserveBytes) in reserve needed, \(free) free",
                retry: true)
        }
        let partial = root.slotDirectory(slot) + "/.felhom-agent.partial"
        do {
            try journal.append(op: op, kind: Self.kind, step: "begin", data: ["version": version, "slot": slot])
            try FileManager.default.createDirectory(atPath: root.slotDirectory(slot), withIntermediateDirectories: true)
            try journal.append(op: op, kind: Self.kind, step: "downloading", data: ["partial": partial])
        } catch {
            return (.deferred("\(error)"), [])
        }
        // Download into the partial file, counting and hashing as it comes.
        let digest: String
        do {
            digest = try await download(version, to: partial, limit: manifest.size)
        } catch {
            unlink(partial)
            return fail(op: op, version, "the download failed: \(error)", retry: true)
        }
        Failpoint.hit("update.after_download")
        guard digest == manifest.sha256 else {
            unlink(partial)
            return refuse(op: op, version, "the download's SHA-256 is \(digest), the signed manifest says \(manifest.sha256)")
        }
        // Install: the binary and the manifest it was verified with, then the directory fsync'd.
        let target = root.executable(in: slot)
        do {
            guard chmod(partial, 0o755) == 0, rename(partial, target) == 0 else {
                throw SignedOpError(message: "cannot install \(target): \(String(cString: strerror(errno)))")
            }
            let installed = try JSONEncoder().encode(InstalledRelease(manifest: view.manifest, signature: view.signature))
            do throws(AppendLogError) { try DurableFile.write(Array(installed), to: root.manifestPath(in: slot), mode: 0o644) } catch {
                throw SignedOpError(message: error.message)
            }
            guard AppendLog.fsyncDirectory(root.slotDirectory(slot)) else { throw SignedOpError(message: "cannot fsync \(root.slotDirectory(slot))") }
            try journal.append(op: op, kind: Self.kind, step: "verified", data: ["sha256": digest])
        } catch {
            return fail(op: op, version, "cannot install the verified binary: \(error)", retry: true)
        }
        // Record the flip for the gate first, then flip.
        do {
            try root.locked { () throws(UpdateRootError) in
                var s = try root.readState() ?? GateState(lastGood: current, committedVersion: runningVersion)
                // This agent's own health record must not count for the new one.
                if unlink(root.healthPath) != 0 && errno != ENOENT {
                    throw UpdateRootError(.io, "cannot remove \(root.healthPath): \(String(cString: strerror(errno)))")
                }
                s.pending = GateState.Pending(
                    op: op, slot: slot, version: version, previous: current, previousVersion: runningVersion, flippedAt: clock.now(),
                    windowSeconds: settings.windowSeconds, settleSeconds: settings.settleSeconds)
                try root.writeState(s)
            }
            try journal.append(op: op, kind: Self.kind, step: "pending", data: [:])
            Failpoint.hit("update.before_flip")
            try root.point(at: slot)
            try journal.append(op: op, kind: Self.kind, step: "flipped", data: ["slot": slot])
        } catch {
            return fail(op: op, version, "cannot switch to slot \(slot): \(error)", retry: true)
        }
        Failpoint.hit("update.after_flip")
        log("self-update: \(runningVersion) → \(version) installed in slot \(slot); exiting so the new binary starts (the gate decides)")
        return (.flipped(version), [])
    }

    func download(_ version: String, to path: String, limit: Int64) async throws -> String {
        try await Self.download(version, with: source.download, to: path, limit: limit)
    }

    /// Streams a release asset into `path` (created 0700, exclusively), at most `limit` bytes;
    /// fsyncs; the hex SHA-256. A shorter answer is "truncated"; a longer one stops at the limit.
    static func download(
        _ version: String, with source: Source.Download, to path: String, limit: Int64
    ) async throws -> String {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
        guard fd >= 0 else { throw SignedOpError(message: "cannot create \(path): \(String(cString: strerror(errno)))") }
        /// Touched only from the sink, which the transport calls one piece at a time.
        final class Progress: @unchecked Sendable {
            let lock = NSLock()
            var hasher = SHA256()
            var count: Int64 = 0
        }
        let progress = Progress()
        do {
            try await source(version) { bytes in
                progress.lock.lock()
                defer { progress.lock.unlock() }
                progress.count += Int64(bytes.count)
                guard progress.count <= limit else { throw SignedOpError(message: "the download is larger than the manifest's \(limit) bytes") }
                progress.hasher.update(bufferPointer: bytes)
                var offset = 0
                while offset < bytes.count {
                    let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw SignedOpError(message: "cannot write \(path): \(String(cString: strerror(errno)))") }
                    offset += n
                }
            }
            guard fsync(fd) == 0 else { throw SignedOpError(message: "cannot fsync \(path): \(String(cString: strerror(errno)))") }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        let count = progress.count
        let digest = SigV4.hex(progress.hasher.finalize())
        guard count == limit else { throw SignedOpError(message: "the download was truncated: \(count) of \(limit) bytes") }
        return digest
    }

    func refuse(op: String?, _ version: String, _ reason: String, retry: Bool = false) -> (Outcome, [AgentEvent]) {
        if let op {
            try? journal.append(
                op: op, kind: Self.kind, step: "failed", data: ["reason": String(reason.prefix(500)), "retry": retry ? "true" : "false"])
        }
        log("self-update to \(version) refused: \(reason)")
        let event = AgentEvent(
            type: "update_refused", severity: .warning,
            data: ["component": "agent", "version": .string(version), "running_version": .string(runningVersion), "reason": .string(reason)])
        return (.refused(reason), [event])
    }

    func fail(op: String, _ version: String, _ reason: String, retry: Bool) -> (Outcome, [AgentEvent]) {
        try? journal.append(op: op, kind: Self.kind, step: "failed", data: ["reason": String(reason.prefix(500)), "retry": retry ? "true" : "false"])
        log("self-update to \(version) failed: \(reason)")
        return (.deferred(reason), [])
    }

    static func retryable(_ entries: [JournalEntry]) -> Bool {
        guard let last = entries.last else { return true }
        if !last.isTerminal { return true }  // in flight: resumed at start
        return last.step == "failed" && last.data["retry"] == "true"
    }

    static func freeBytes(_ path: String) -> Int64? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }

    // MARK: - Start, health, verdicts

    /// At start: an update interrupted before its flip is undone (the partial download removed,
    /// a recorded-but-not-done flip cleared) and marked for another try. One interrupted after the
    /// flip waits for the gate.
    public func resume() {
        for (op, entries) in journal.inFlight() where entries.first?.kind == Self.kind {
            guard let last = entries.last else { continue }
            switch last.step {
            case "flipped":
                continue
            case "pending":
                let slot = entries.first?.data["slot"]
                try? root.locked { () throws(UpdateRootError) in
                    guard var s = try root.readState(), let p = s.pending, p.op == op else { return }
                    if root.currentSlot() != slot {
                        s.pending = nil
                        try root.writeState(s)
                    }
                }
                if root.currentSlot() == slot {
                    // The link was switched before the crash recorded it: the gate decides as for any flip.
                    try? journal.append(op: op, kind: Self.kind, step: "flipped", data: ["slot": slot ?? "", "recovered": "true"])
                    continue
                }
            default:
                if let partial = entries.first(where: { $0.step == "downloading" })?.data["partial"] { unlink(partial) }
            }
            try? journal.append(
                op: op, kind: Self.kind, step: "failed", data: ["reason": "interrupted at \(last.step); discarded, tried again", "retry": "true"])
            log("self-update \(op) was interrupted at \(last.step): discarded; it is tried again")
        }
    }

    /// Records that this agent is healthy (after a cycle that reported to the hub and read PVE).
    public func writeHealth() {
        guard root.currentSlot() != nil else { return }
        do { try root.writeHealth(HealthRecord(version: runningVersion, at: clock.now(), pid: getpid())) } catch {
            log("cannot write \(root.healthPath): \(error)")
        }
    }

    /// The gate's verdict on this box's last flip, as an event, once: `update_committed` or
    /// `update_reverted` (with the gate's reason); the journal records it as reported.
    public func collectVerdict() -> [AgentEvent] {
        guard let result = try? root.readResult(), !journal.entries(of: result.op).isEmpty, !journal.isFinished(result.op) else { return [] }
        var data: [String: JSONValue] = ["component": "agent", "version": .string(result.version), "running_version": .string(runningVersion)]
        if let p = result.previousVersion { data["previous_version"] = .string(p) }
        switch result.outcome {
        case .committed:
            try? journal.append(op: result.op, kind: Self.kind, step: "done", data: ["version": result.version])
            rollbacks.consume(.agent)
            log("self-update to \(result.version) committed by the gate")
            return [AgentEvent(type: "update_committed", severity: .info, data: data)]
        case .reverted:
            data["reason"] = .string(result.reason ?? "reverted by the gate")
            try? journal.append(op: result.op, kind: Self.kind, step: "compensated", data: ["reason": String((result.reason ?? "").prefix(500))])
            log("self-update to \(result.version) REVERTED by the gate: \(result.reason ?? "")")
            return [AgentEvent(type: "update_reverted", severity: .warning, data: data)]
        }
    }
}
