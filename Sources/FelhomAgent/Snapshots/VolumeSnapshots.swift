import Crypto
import FelhomAPI
import FelhomCore
import Foundation
import ObjectStore
import Proxmox

/// How the agent snapshots volumes: the bucket, the box's prefix in it, the snapshot master key
/// and the runner of the LVM commands (`snapshots.*` in the config).
public struct VolumeSnapshotSettings: Sendable {
    public var s3: S3Client
    public var prefix: String
    let masterKeyBytes: Data
    public var runner: any CommandRunner
    public var devicePath: @Sendable (String, String) -> String
    /// Where `volume.restore` keeps a verified volume before writing it (default
    /// `state_dir/volume-restore`; needs the volume's size free).
    public var restoreDir: String?

    public init(
        s3: S3Client, prefix: String, masterKey: SymmetricKey, runner: any CommandRunner,
        devicePath: @escaping @Sendable (String, String) -> String = { "/dev/\($0)/\($1)" }, restoreDir: String? = nil
    ) {
        self.restoreDir = restoreDir
        self.s3 = s3
        self.prefix = prefix
        masterKeyBytes = masterKey.withUnsafeBytes { Data($0) }
        self.runner = runner
        self.devicePath = devicePath
    }

    public var masterKey: SymmetricKey { SymmetricKey(data: masterKeyBytes) }
}

/// The agent's volume snapshot round (docs/object-storage.md): once a day, from the host's
/// backup hour on, every protected volume that has no snapshot for today's window is snapshotted
/// (one after another, in the background: a cycle never waits for an upload), its record goes to
/// the hub, and `volume_snapshot_completed` or `volume_snapshot_failed` is posted. Which window
/// each volume last completed is kept in `state_dir/volume-snapshots.json`, so a restart neither
/// repeats nor skips a day.
///
/// App-consistent when it can be: a guest whose backup is due waits; when its controller has
/// quiesced the apps for that backup, ``quiesced(vmid:now:)`` makes the snapshot LVs of its
/// volumes inside the same quiet moment, and the round uploads those (`consistency: app`). A guest
/// without a controller, or whose backup ran without one, is snapshotted as it is (`crash`, like a
/// power cut: the file system's journal makes it mountable).
public actor VolumeSnapshots {
    struct Saved: Codable {
        /// volume id → the window (`YYYY-MM-DD`) and time of its last complete snapshot.
        var done: [String: Done] = [:]
        struct Done: Codable {
            var window: String
            var at: Date
        }
    }

    let snapshotter: VolumeSnapshotter
    let statePath: String
    let timeZone: TimeZone
    var saved: Saved
    var failures: [String: (reason: String, message: String)] = [:]
    var plan: SnapshotTargets.Plan?
    var hour = 0
    var running: Task<Void, Never>?
    /// Snapshot LVs made while the guest's apps were quiesced, waiting for the round (volume id →).
    var prepared: [String: VolumeSnapshotter.Prepared] = [:]

    public init(snapshotter: VolumeSnapshotter, stateDir: String, timeZone: TimeZone = .current) {
        self.snapshotter = snapshotter
        statePath = stateDir + "/volume-snapshots.json"
        self.timeZone = timeZone
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        saved = (try? dec.decode(Saved.self, from: Data(contentsOf: URL(fileURLWithPath: stateDir + "/volume-snapshots.json")))) ?? Saved()
    }

    /// The daily window of `now` and whether the hour was reached (the backups' own window).
    static func window(_ now: Date, hour: Int, timeZone: TimeZone) -> (window: String, reached: Bool) {
        Agent.backupWindow(now, hour: hour, timeZone: timeZone)
    }

    /// The volumes of `plan` due in this window (none before the hour).
    func due(_ plan: SnapshotTargets.Plan, now: Date, hour: Int) -> [VolumeSnapshotter.Target] {
        let (window, reached) = Self.window(now, hour: hour, timeZone: timeZone)
        guard reached else { return [] }
        return plan.targets.map(\.target).filter { saved.done[$0.volumeID]?.window != window }
    }

    /// Starts today's run when volumes are due and no run is going; `record` posts each record,
    /// `post` each event. A volume whose guest's app-consistent backup is still to come
    /// (`awaitingBackup`) waits for it, unless its LV was already made in the quiet moment.
    /// Returns whether a run started.
    @discardableResult
    public func tick(
        plan: SnapshotTargets.Plan, now: Date, hour: Int, awaitingBackup: @Sendable (Int) -> Bool = { _ in false },
        record: @escaping @Sendable (VolumeSnapshotRecord) async throws -> Void, post: @escaping @Sendable (AgentEvent) async -> Void
    ) -> Bool {
        self.plan = plan
        self.hour = hour
        guard running == nil else { return false }
        let vmidOf = Dictionary(plan.targets.map { ($0.target.volumeID, $0.vmid) }, uniquingKeysWith: { a, _ in a })
        let targets = due(plan, now: now, hour: hour).filter { t in
            prepared[t.volumeID] != nil || !(vmidOf[t.volumeID].map(awaitingBackup) ?? false)
        }
        guard !targets.isEmpty else { return false }
        let window = Self.window(now, hour: hour, timeZone: timeZone).window
        running = Task { [snapshotter] in
            for target in targets {
                let ready = await self.takePrepared(target.volumeID)
                let event = await Self.run(snapshotter, target, prepared: ready, record: record)
                await self.finished(target.volumeID, window: window, event: event)
                await post(event)
            }
            await self.done()
        }
        return true
    }

    /// Called while the apps of guest `vmid` are quiesced for its backup: makes the snapshot LVs
    /// of its protected volumes that are due (lvcreate only; the round uploads them). Returns
    /// what it did, for the log.
    public func quiesced(vmid: Int, now: Date) async -> [String] {
        guard let plan else { return [] }
        let due = Set(self.due(plan, now: now, hour: hour).map(\.volumeID))
        var said: [String] = []
        for t in plan.targets where t.vmid == vmid && due.contains(t.target.volumeID) && prepared[t.target.volumeID] == nil {
            do {
                prepared[t.target.volumeID] = try await snapshotter.prepare(t.target)
                said.append("snapshot of \(t.target.volumeID) taken while guest \(vmid)'s apps were quiesced")
            } catch {
                said.append("cannot snapshot \(t.target.volumeID) while guest \(vmid) is quiesced (the round takes it as it is): \(error)")
            }
        }
        return said
    }

    func takePrepared(_ volumeID: String) -> VolumeSnapshotter.Prepared? { prepared.removeValue(forKey: volumeID) }

    /// Waits for the run in progress (tests, shutdown).
    public func wait() async { await running?.value }

    func done() { running = nil }

    /// One snapshot of `target`, its record handed to `record` (the hub): the event that says
    /// how it went (`volume_snapshot_completed` or `volume_snapshot_failed` with `reason`).
    public static func run(
        _ snapshotter: VolumeSnapshotter, _ target: VolumeSnapshotter.Target, prepared: VolumeSnapshotter.Prepared? = nil,
        record: @Sendable (VolumeSnapshotRecord) async throws -> Void, progress: (@Sendable (Int64) -> Void)? = nil
    ) async -> AgentEvent {
        var data: [String: JSONValue] = ["volume_id": .string(target.volumeID), "consistency": prepared == nil ? "crash" : "app"]
        do {
            let r: VolumeSnapshotRecord
            if let prepared {
                r = try await snapshotter.finish(prepared, progress: progress)
            } else {
                r = try await snapshotter.snapshot(target, progress: progress)
            }
            data["snapshot_id"] = .string(r.snapshotID)
            data["size"] = .int(r.size)
            data["object_size"] = .int(r.objectSize)
            do { try await record(r) } catch {
                // The object is stored; the hub did not take the record. Said, and retried tomorrow.
                data["reason"] = "record_failed"
                data["message"] = .string(String("\(error)".prefix(300)))
                return AgentEvent(type: "volume_snapshot_failed", severity: .warning, data: data)
            }
            return AgentEvent(type: "volume_snapshot_completed", severity: .info, data: data)
        } catch {
            data["reason"] = .string(error.code)
            data["message"] = .string(String(error.message.prefix(300)))
            return AgentEvent(type: "volume_snapshot_failed", severity: .warning, data: data)
        }
    }

    func finished(_ volumeID: String, window: String, event: AgentEvent) {
        if event.type == "volume_snapshot_completed" {
            failures[volumeID] = nil
            saved.done[volumeID] = .init(window: window, at: Date())
            let enc = JSONEncoder()
            enc.dateEncodingStrategy = .iso8601
            enc.outputFormatting = [.sortedKeys]
            if let data = try? enc.encode(saved) { try? DurableFile.write([UInt8](data), to: statePath) }
        } else {
            failures[volumeID] = (event.data["reason"]?.stringValue ?? "failed", event.data["message"]?.stringValue ?? "")
        }
    }

    /// What the host report says of each volume.
    public var report: [VolumeProtection] {
        (plan?.protection ?? []).map { p in
            var p = p
            if p.state == .protected {
                p.lastSnapshotAt = saved.done[p.volumeID]?.at
                if let f = failures[p.volumeID] {
                    p.state = .failing
                    p.reason = f.reason
                    p.message = f.message
                }
            }
            return p
        }
    }

    /// Cleans what a crash left (``VolumeSnapshotter/recover()``).
    public func recover() async -> [String] { await snapshotter.recover() }
}
