import FelhomCore
import Foundation
import Proxmox

/// Runs a plan: every action through the per-guest queue and the gate; tasks waited on by UPID;
/// a synchronous config write counts as success; a failed action is counted, not fatal.
public struct Engine: Sendable {
    let pve: any PVEAPI
    let node: String
    let queue: GuestQueue
    let provisioner: Provisioner
    let taskTimeout: Duration
    let log: @Sendable (String) -> Void

    public init(
        pve: any PVEAPI, node: String, queue: GuestQueue, provisioner: Provisioner, taskTimeout: Duration = .seconds(600),
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.pve = pve
        self.node = node
        self.queue = queue
        self.provisioner = provisioner
        self.taskTimeout = taskTimeout
        self.log = log
    }

    /// The outcome of one pass.
    public struct Outcome: Sendable, Equatable {
        public var planned: [PlannedAction]
        public var succeeded = 0
        public var failed = 0
        public var errors: [String] = []
        /// Guests created (provisioned from the golden template) in this pass: each is reported as an event.
        public var provisioned: [Int] = []
        /// The guests as this pass observed them, before acting.
        public var observed: [ObservedGuest] = []

        /// Whether the box this pass observed differs, in any guest's presence, run status or
        /// memory, from `report` — taken earlier in the cycle. A task started before a restart
        /// (a stop, a start) can end between the two: the plan then has nothing to do, and the
        /// report already sent is stale.
        public func observedDiffers(from report: HostReport) -> Bool {
            let before = Dictionary(report.guests.map { ($0.vmid, "\($0.status.rawValue) \($0.spec?.memory ?? 0)") }, uniquingKeysWith: { a, _ in a })
            let after = Dictionary(observed.map { ($0.vmid, "\($0.status.rawValue) \($0.config?.memory ?? 0)") }, uniquingKeysWith: { a, _ in a })
            return before != after
        }
    }

    /// Observes, plans and acts once. Different guests proceed in parallel; one guest's actions in order.
    public func reconcile(desired: DesiredState) async throws -> Outcome {
        let observed = try await HostObserver(pve: pve, node: node).guests().map(\.0)
        let plan = Plan.make(desired: desired, actual: observed)
        var outcome = Outcome(planned: plan)
        outcome.observed = observed
        let byGuest = Dictionary(grouping: plan, by: \.vmid)
        let results = await withTaskGroup(of: [(PlannedAction, Bool, String?)].self) { group in
            for (vmid, actions) in byGuest {
                group.addTask {
                    var out: [(PlannedAction, Bool, String?)] = []
                    for a in actions {
                        do {
                            try await queue.run(vmid: vmid) { try await self.apply(a) }
                            out.append((a, true, nil))
                        } catch {
                            out.append((a, false, "\(a): \(error)"))
                        }
                    }
                    return out
                }
            }
            var all: [(PlannedAction, Bool, String?)] = []
            for await r in group { all += r }
            return all
        }
        for (action, ok, err) in results {
            if ok { outcome.succeeded += 1 } else { outcome.failed += 1 }
            if ok, case .provision(let g) = action { outcome.provisioned.append(g.vmid) }
            if let err {
                outcome.errors.append(err)
                log("reconcile: \(err)")
            }
        }
        return outcome
    }

    func apply(_ a: PlannedAction) async throws {
        let mutation: Gate.Mutation
        switch a {
        case .provision: mutation = .create
        case .setConfig: mutation = .setConfig
        case .start: mutation = .start
        case .stop: mutation = .stop
        }
        let decision = Gate.decide(mutation, provenance: .desiredState, target: .init(dataBearing: true))
        guard decision == .allowed else {
            throw GateError(mutation: mutation, decision: decision)  // unreachable for plan actions; kept as the choke point
        }
        switch a {
        case .provision(let g):
            log("provisioning \(g.vmid) (\(g.name)) from the golden template")
            try await provisioner.provision(g)
        case .setConfig(let vmid, let set):
            try await pve.updateContainerConfig(node: node, vmid: vmid, Plan.update(set))
        case .start(let vmid):
            _ = try await pve.waitTask(try await pve.startContainer(node: node, vmid: vmid), timeout: taskTimeout)
        case .stop(let vmid):
            _ = try await pve.waitTask(try await pve.shutdownContainer(node: node, vmid: vmid, timeout: 60, forceStop: true), timeout: taskTimeout)
        }
    }
}
