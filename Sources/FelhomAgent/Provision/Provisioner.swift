import FelhomCore
import Foundation
import Proxmox

/// The journaled steps of one provision, in order; `failed` and `compensated` end it otherwise.
/// The raw values are what the journal holds (a journal written by an older agent resumes).
public enum ProvisionStep: String, Sendable, CaseIterable {
    case begin
    case restoreStarted = "restore_started"
    case restored, configured, started, token, done, failed, compensated
}

/// Creates a desired guest by restoring the golden template backup, configures it, starts it and
/// hands it a controller token — as one journaled operation (SPEC §4 "provision by restore").
///
/// Steps, each journaled (fsync) before it is acted on: `begin` (vmid confirmed absent) →
/// `restore_started` (UPID) → `restored` → `configured` → `started` → `token` → `done`. After a
/// crash ``resume(_:)`` continues from the last step; the PVE task outlives the agent, so a restore
/// in progress is waited for, never started twice. A failure midway undoes what this operation
/// created (destroy without a signature: the gate allows undoing the same operation's work).
public struct Provisioner: Sendable {
    public struct Settings: Sendable {
        public var node: String
        /// The golden template backup volid (features `nesting=1,keyctl=1`).
        public var goldenTemplate: String
        /// Storage for the new guest's root disk.
        public var storage: String
        public var taskTimeout: Duration

        public init(node: String, goldenTemplate: String, storage: String, taskTimeout: Duration = .seconds(600)) {
            self.node = node
            self.goldenTemplate = goldenTemplate
            self.storage = storage
            self.taskTimeout = taskTimeout
        }
    }

    let pve: any PVEAPI
    let journal: Journal
    let settings: Settings
    /// Issues the controller token for a new guest (the hub's guest key); `nil` skips the step.
    let issueToken: (@Sendable (_ vmid: Int, _ name: String) async throws -> Void)?
    let log: @Sendable (String) -> Void

    public init(
        pve: any PVEAPI, journal: Journal, settings: Settings,
        issueToken: (@Sendable (Int, String) async throws -> Void)? = nil, log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.pve = pve
        self.journal = journal
        self.settings = settings
        self.issueToken = issueToken
        self.log = log
    }

    public static let kind = "provision"

    /// Appends one step of this operation to the journal (fsync before the step is acted on).
    private func record(_ op: String, _ step: ProvisionStep, data: [String: String]) throws(JournalError) {
        try journal.append(op: op, kind: Self.kind, step: step.rawValue, data: data)
    }

    /// A provision failed and was rolled back (or could not be).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var vmid: Int
        public var message: String
        public var compensated: Bool
        public var description: String {
            "provision of \(vmid) failed: \(message)" + (compensated ? " (what it created was removed)" : "")
        }
    }

    /// Provisions `guest` as a new journaled operation. The caller holds the guest's queue slot.
    public func provision(_ guest: DesiredState.Guest) async throws {
        let op = "provision-\(guest.vmid)-\(UUID().uuidString.prefix(8).lowercased())"
        // Free only on PVE's definite "does not exist": a failed read is not an empty slot.
        let free: Bool
        do { free = try await vmidIsFree(guest.vmid) } catch {
            throw Failure(
                vmid: guest.vmid, message: "cannot tell whether vmid \(guest.vmid) is free (\(error)); not provisioning", compensated: false)
        }
        guard free else {
            throw Failure(vmid: guest.vmid, message: "vmid \(guest.vmid) is already in use", compensated: false)
        }
        try record(op, .begin, data: Self.data(guest))
        Failpoint.hit("provision.after_begin")
        try await run(op: op, guest: guest, from: .begin, upid: nil)
    }

    /// Continues an operation found in flight at start-up.
    public func resume(op: String, entries: [JournalEntry]) async throws {
        guard let begin = entries.first(where: { $0.step == ProvisionStep.begin.rawValue }), let guest = Self.guest(from: begin.data) else {
            try record(op, .failed, data: ["reason": "journal entry without a guest"])
            return
        }
        guard let lastText = entries.last?.step, let last = ProvisionStep(rawValue: lastText) else {
            try record(op, .failed, data: ["reason": "unknown journal step '\(entries.last?.step ?? "")' (written by a newer agent?)"])
            return
        }
        log("resuming \(op) after step \(last.rawValue)")
        let upid = entries.last(where: { $0.step == ProvisionStep.restoreStarted.rawValue })?.data["upid"].flatMap { try? UPID(parsing: $0) }
        try await run(op: op, guest: guest, from: last, upid: upid)
    }

    private func run(op: String, guest: DesiredState.Guest, from step: ProvisionStep, upid recorded: UPID?) async throws {
        let node = settings.node
        let vmid = guest.vmid
        var upid = recorded
        do {
            var step = step
            if step == .begin {
                if try await !vmidIsFree(vmid) {
                    // Something is there, and this op has no record (no restore UPID) of creating
                    // it — unless it was killed between asking for the restore and recording it:
                    // then PVE's task list holds this token's vzrestore of the vmid after `begin`.
                    guard let found = await askedForByThisOperation(op: op, vmid: vmid) else {
                        // Not ours to adopt, rewrite or remove.
                        throw NotOurs(vmid: vmid)
                    }
                    try record(op, .restoreStarted, data: ["upid": found.description, "vmid": "\(vmid)", "found": "task list"])
                    upid = found
                } else {
                    var spec = ContainerCreateSpec(vmid: vmid, ostemplate: settings.goldenTemplate, restore: true)
                    spec.storage = settings.storage
                    spec.hostname = guest.name
                    spec.unique = true
                    let task = try await pve.createContainer(node: node, spec)
                    try record(op, .restoreStarted, data: ["upid": task.description, "vmid": "\(vmid)"])
                    Failpoint.hit("provision.after_restore_started")
                    _ = try await pve.waitTask(task, timeout: settings.taskTimeout)
                }
                step = .restoreStarted
            }
            if step == .restoreStarted {
                if let upid {
                    // The restore task outlives a crash: wait for the recorded one, never start another.
                    _ = try await pve.waitTask(upid, timeout: settings.taskTimeout)
                }
                let status = try await pve.containerStatus(node: node, vmid: vmid)
                try await waitForUnlock(vmid: vmid, status)
                try record(op, .restored, data: ["vmid": "\(vmid)"])
                Failpoint.hit("provision.after_restored")
                step = .restored
            }
            if step == .restored {
                var set = Plan.configKeys(for: guest)
                set["tags"] = "felhom"
                try await pve.updateContainerConfig(node: node, vmid: vmid, Plan.update(set))
                try record(op, .configured, data: ["vmid": "\(vmid)"])
                Failpoint.hit("provision.after_configured")
                step = .configured
            }
            if step == .configured {
                if guest.runState == .running {
                    let status = try await pve.containerStatus(node: node, vmid: vmid)
                    if !status.isRunning {
                        _ = try await pve.waitTask(try await pve.startContainer(node: node, vmid: vmid), timeout: settings.taskTimeout)
                    }
                }
                try record(op, .started, data: ["vmid": "\(vmid)"])
                Failpoint.hit("provision.after_started")
                step = .started
            }
            if step == .started {
                if let issueToken { try await issueToken(vmid, guest.name) }
                try record(op, .token, data: ["vmid": "\(vmid)"])
                Failpoint.hit("provision.after_token")
                step = .token
            }
            if step == .token {
                try record(op, .done, data: ["vmid": "\(vmid)"])
            }
        } catch let e as JournalError {
            throw e  // no record, no action: leave the state for the next start to resume
        } catch let e as NotOurs {
            try? record(op, .failed, data: ["vmid": "\(vmid)", "reason": e.description])
            throw Failure(vmid: vmid, message: e.description, compensated: false)
        } catch {
            let compensated = await compensate(op: op, vmid: vmid, reason: "\(error)")
            throw Failure(vmid: vmid, message: "\(error)", compensated: compensated)
        }
    }

    /// Undoes what this operation created: stop and destroy the new guest, without a signature
    /// because the same journaled operation created it — and only when the journal proves that:
    /// the vmid was confirmed free at `begin` and this op recorded the UPID of the restore task
    /// that created it, and that task did not fail (a failed restore cleans up after itself, so
    /// whatever stands there then is not ours). Any doubt leaves the guest alone.
    private func compensate(op: String, vmid: Int, reason: String) async -> Bool {
        let node = settings.node
        let provenance = await createdByThisOperation(op: op, vmid: vmid)
        let decision = Gate.decide(
            .destroy, provenance: .compensation, target: .init(dataBearing: !provenance.proven, createdBySameOperation: provenance.proven))
        guard decision == .allowed else {
            try? record(
                op, .failed,
                data: ["vmid": "\(vmid)", "reason": String(reason.prefix(300)) + "; not rolled back: \(provenance.why)"])
            log("provision of \(vmid) failed and was not rolled back (\(provenance.why)): \(reason)")
            return false
        }
        do {
            if try await !vmidIsFree(vmid) {
                let status = try await pve.containerStatus(node: node, vmid: vmid)
                try await waitForUnlock(vmid: vmid, status)
                if try await pve.containerStatus(node: node, vmid: vmid).isRunning {
                    _ = try await pve.waitTask(try await pve.stopContainer(node: node, vmid: vmid), timeout: settings.taskTimeout)
                }
                _ = try await pve.waitTask(
                    try await pve.destroyContainer(node: node, vmid: vmid, purge: true, force: true), timeout: settings.taskTimeout)
            }
            try record(op, .compensated, data: ["vmid": "\(vmid)", "reason": String(reason.prefix(300))])
            log("provision of \(vmid) rolled back: \(reason)")
            return true
        } catch {
            try? record(op, .failed, data: ["vmid": "\(vmid)", "reason": "compensation failed: \(error)"])
            return false
        }
    }

    /// Evidence from this operation's own journal (never from desired state) that it created the guest.
    func createdByThisOperation(op: String, vmid: Int) async -> (proven: Bool, why: String) {
        let entries = journal.entries(of: op)
        guard entries.first?.step == ProvisionStep.begin.rawValue else { return (false, "no begin record") }
        guard let text = entries.last(where: { $0.step == ProvisionStep.restoreStarted.rawValue })?.data["upid"], let upid = try? UPID(parsing: text)
        else {
            return (false, "this operation recorded no restore task, so it did not create guest \(vmid)")
        }
        guard ["vzcreate", "vzrestore"].contains(upid.type), upid.id == "\(vmid)" else {
            return (false, "the recorded task \(upid.type):\(upid.id) is not the creation of \(vmid)")
        }
        do {
            let status = try await pve.taskStatus(upid)
            if !status.isRunning && !status.succeeded {
                return (false, "the restore task failed (\(status.exitStatus ?? "?")): PVE removed its own partial guest")
            }
            return (true, "created by \(upid)")
        } catch {
            return (false, "cannot read the restore task's status (\(error))")
        }
    }

    /// True only when PVE says the guest does not exist (``PVEAPI/containerExists(node:vmid:)``).
    func vmidIsFree(_ vmid: Int) async throws -> Bool {
        try await !pve.containerExists(node: settings.node, vmid: vmid)
    }

    /// The vmid holds a guest this operation cannot prove it created.
    /// The restore this operation asked PVE for but did not live to record: a `vzrestore` of
    /// exactly `vmid` by this agent's own token, started no earlier than the operation's `begin`
    /// (which found the vmid free). Nil when there is none, or the task list cannot be read.
    func askedForByThisOperation(op: String, vmid: Int) async -> UPID? {
        guard let begin = journal.entries(of: op).first, begin.step == ProvisionStep.begin.rawValue else { return nil }
        return await pve.ownTask(node: settings.node, vmid: vmid, type: "vzrestore", since: begin.at)
    }

    struct NotOurs: Error, CustomStringConvertible {
        var vmid: Int
        var description: String {
            "vmid \(vmid) holds a guest this operation has no record of creating: left untouched (not adopted, not removed)"
        }
    }

    /// Waits (bounded) while PVE still holds a lock (`create` during a restore).
    private func waitForUnlock(vmid: Int, _ first: PVEGuestStatus) async throws {
        var status = first
        let deadline = ContinuousClock.now + settings.taskTimeout
        while status.lock != nil {
            guard ContinuousClock.now < deadline else {
                throw Failure(vmid: vmid, message: "guest stayed locked (\(status.lock ?? "?"))", compensated: false)
            }
            try await Task.sleep(for: .milliseconds(200))
            status = try await pve.containerStatus(node: settings.node, vmid: vmid)
        }
    }

    static func data(_ g: DesiredState.Guest) -> [String: String] {
        ["vmid": "\(g.vmid)", "guest": String(decoding: ContractCoding.encode(g), as: UTF8.self)]
    }

    static func guest(from data: [String: String]) -> DesiredState.Guest? {
        guard let text = data["guest"] else { return nil }
        return try? ContractCoding.decode(Data(text.utf8))
    }
}

/// Crash-test hooks: when `FELHOM_AGENT_FAILPOINT` names this point, the process kills itself
/// with SIGKILL right there (no cleanup, like a power cut). Unset in production.
public enum Failpoint {
    static let armed = ProcessInfo.processInfo.environment["FELHOM_AGENT_FAILPOINT"]

    public static func hit(_ name: String) {
        guard let armed, armed == name else { return }
        FileHandle.standardError.write(Data("failpoint \(name): SIGKILL\n".utf8))
        kill(getpid(), SIGKILL)
    }
}
