import FelhomCore
import Foundation
import Testing

@testable import FelhomAgent

@Suite struct PlanTests {
    let web = DesiredState.Guest(vmid: 100, name: "web", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "apps")

    func observed(
        _ vmid: Int, _ status: ObservedGuest.Status, cores: Int? = 2, units: Int? = 200, mem: Int? = 2048, desc: String? = "apps\n",
        lock: String? = nil, readable: Bool = true
    ) -> ObservedGuest {
        ObservedGuest(
            vmid: vmid, name: "web", status: status,
            config: readable ? ObservedConfig(cores: cores, cpuunits: units, memory: mem, description: desc) : nil, lock: lock)
    }

    @Test func inSyncGuestNeedsNothingDespitePVEsTrailingNewline() {
        #expect(Plan.make(desired: .init(guests: [web]), actual: [observed(100, .running)]).isEmpty)
    }

    @Test func missingGuestIsProvisioned() {
        #expect(Plan.make(desired: .init(guests: [web]), actual: []) == [.provision(web)])
    }

    @Test func configBeforeRunStateAndOnlyWhatDiffers() {
        let plan = Plan.make(desired: .init(guests: [web]), actual: [observed(100, .stopped, mem: 1024)])
        #expect(plan == [.setConfig(vmid: 100, set: ["memory": "2048"]), .start(vmid: 100)])
    }

    @Test func cpuMapsToCoresAndProportionalWeight() {
        var g = web
        g.cpu = 0.5
        let plan = Plan.make(desired: .init(guests: [g]), actual: [observed(100, .running)])
        #expect(plan == [.setConfig(vmid: 100, set: ["cores": "1", "cpuunits": "50"])])
    }

    @Test func neverWritesAFieldItCouldNotRead() {
        #expect(Plan.make(desired: .init(guests: [web]), actual: [observed(100, .running, mem: nil)]).isEmpty)
        // Whole config unreadable: run state is still handled, config is not touched.
        #expect(Plan.make(desired: .init(guests: [web]), actual: [observed(100, .stopped, mem: 1, readable: false)]) == [.start(vmid: 100)])
    }

    @Test func lockedOrUnknownGuestsAreLeftAlone() {
        #expect(Plan.make(desired: .init(guests: [web]), actual: [observed(100, .stopped, mem: 1, lock: "backup")]).isEmpty)
        #expect(Plan.make(desired: .init(guests: [web]), actual: [observed(100, .unknown)]).isEmpty)
    }

    @Test func guestsNotDesiredAreNeverDestroyed() {
        let plan = Plan.make(desired: .init(guests: []), actual: [observed(100, .running), observed(101, .stopped)])
        #expect(plan.isEmpty)
    }

    @Test func vmidOrderAndStop() {
        var a = web
        a.vmid = 300
        var b = web
        b.vmid = 200
        b.runState = .stopped
        let plan = Plan.make(desired: .init(guests: [a, b]), actual: [observed(200, .running)])
        #expect(plan == [.stop(vmid: 200), .provision(a)])
    }

    @Test func applyingThePlanLeavesNothingToDo() {
        // Simulate the actions on the observed state: the second plan is empty (idempotence).
        var guests = [web, DesiredState.Guest(vmid: 101, name: "db", cpu: 1, memoryMB: 1024, diskGB: 8, runState: .stopped, description: "")]
        guests[0].memoryMB = 4096
        let desired = DesiredState(guests: guests)
        var actual = [observed(100, .stopped), observed(101, .running, cores: 1, units: 100, mem: 1024, desc: "")]
        for a in Plan.make(desired: desired, actual: actual) {
            switch a {
            case .setConfig(let v, let set):
                let i = actual.firstIndex { $0.vmid == v }!
                if let m = set["memory"] { actual[i].config?.memory = Int(m) }
            case .start(let v): actual[actual.firstIndex { $0.vmid == v }!].status = .running
            case .stop(let v): actual[actual.firstIndex { $0.vmid == v }!].status = .stopped
            case .provision: Issue.record("nothing to provision")
            }
        }
        #expect(Plan.make(desired: desired, actual: actual).isEmpty)
    }
}

/// The reversibility gate, exhaustively: mutation × provenance × data-bearing.
@Suite struct GateTests {
    /// Expected decisions with a plain target (not ephemeral, not created by the same operation) and a
    /// verified signature exactly when provenance is signedOp. Columns: desiredState, signedOp,
    /// compensation, heal; each as (data-bearing, not data-bearing). A = allowed, S = needs signature,
    /// R = refused.
    static let table: [Gate.Mutation: String] = [
        //                 dS   sO   co   he
        .create: "AA" + "AA" + "AA" + "AA",
        .start: "AA" + "AA" + "AA" + "AA",
        .restart: "AA" + "AA" + "AA" + "AA",
        .stop: "AA" + "AA" + "AA" + "RR",
        .setConfig: "AA" + "AA" + "AA" + "RR",
        .destroy: "SS" + "AA" + "SS" + "RR",
        .rollback: "SS" + "AA" + "SS" + "RR",
        .restoreOver: "SS" + "AA" + "SS" + "RR",
        .diskDecommission: "SS" + "AA" + "SS" + "RR",
    ]

    static func letter(_ d: Gate.Decision) -> Character {
        switch d {
        case .allowed: return "A"
        case .needsSignature: return "S"
        case .refused: return "R"
        }
    }

    @Test(arguments: Gate.Mutation.allCases)
    func everyMutationProvenanceAndDataBearingCombination(_ m: Gate.Mutation) throws {
        let row = try #require(Self.table[m])
        var got = ""
        for p in [Gate.Provenance.desiredState, .signedOp, .compensation, .heal] {
            for dataBearing in [true, false] {
                got.append(Self.letter(Gate.decide(m, provenance: p, target: .init(dataBearing: dataBearing), signatureVerified: p == .signedOp)))
            }
        }
        #expect(got == row, "\(m)")
    }

    @Test func signedOpWithoutAVerifiedSignatureIsNotEnough() {
        for m in [Gate.Mutation.destroy, .rollback, .restoreOver, .diskDecommission] {
            #expect(Gate.decide(m, provenance: .signedOp, target: .init(dataBearing: true), signatureVerified: false) != .allowed)
        }
    }

    @Test func undoingWhatTheSameOperationCreatedNeedsNoSignature() {
        #expect(Gate.decide(.destroy, provenance: .compensation, target: .init(dataBearing: true, createdBySameOperation: true)) == .allowed)
        #expect(Gate.decide(.destroy, provenance: .desiredState, target: .init(dataBearing: true, createdBySameOperation: false)) != .allowed)
    }

    @Test func ephemeralScratchGuestsMayBeDestroyed() {
        #expect(Gate.decide(.destroy, provenance: .desiredState, target: .init(dataBearing: false, ephemeral: true)) == .allowed)
        // Tagged ephemeral but holding data: still needs a signature.
        #expect(Gate.decide(.destroy, provenance: .desiredState, target: .init(dataBearing: true, ephemeral: true)) != .allowed)
        // Rollback of an ephemeral guest is not a destroy: needs a signature like any overwrite.
        #expect(Gate.decide(.rollback, provenance: .desiredState, target: .init(dataBearing: true, ephemeral: true)) != .allowed)
    }

    @Test func healingIsARestartNeverADestroy() {
        #expect(Gate.decide(.restart, provenance: .heal, target: .init(dataBearing: true)) == .allowed)
        if case .refused(let why) = Gate.decide(.destroy, provenance: .heal, target: .init(dataBearing: true)) {
            #expect(why.contains("restart"))
        } else {
            Issue.record("heal destroy must be refused")
        }
    }

    /// Issue 11: the plan and the hub's drift view compare with one function, so a guest the drift
    /// view shows as differing in some fields is exactly the config the plan writes.
    @Test func planAndDriftAgree() {
        let g = DesiredState.Guest(vmid: 120, name: "photos", cpu: 2, memoryMB: 2048, diskGB: 8, runState: .running, description: "apps")
        let observed = GuestComparison.Observed(cores: 1, cpuunits: 200, memory: 2048, description: "other\n")
        let plan = Plan.make(
            desired: DesiredState(guests: [g]),
            actual: [
                ObservedGuest(
                    vmid: 120, name: "photos", status: .running,
                    config: ObservedConfig(cores: 1, cpuunits: 200, memory: 2048, description: "other\n"))
            ])
        let drift = GuestComparison.differences(g, observed)
        guard case .setConfig(_, let set)? = plan.first else {
            Issue.record("expected a config write, got \(plan)")
            return
        }
        #expect(Set(set.keys) == Set(drift.map(\.field)))
        #expect(drift.allSatisfy { set[$0.field] == $0.desired })
    }
}

@Suite struct BoundedDrainTests {
    @Test func aBoundedDrainAnswersAtTheLimitWhileWorkStillRuns() async throws {
        let queue = GuestQueue()
        let slow = Task { try await queue.run(vmid: 100) { try await Task.sleep(for: .seconds(5)) } }
        try await Task.sleep(for: .milliseconds(50))
        // false: it answered before the 5 s submission ended (waiting for it would have answered true).
        #expect(await queue.drain(upTo: .milliseconds(200)) == false)
        slow.cancel()
        let quick = GuestQueue()
        _ = try await quick.run(vmid: 101) { 1 }
        #expect(await quick.drain(upTo: .seconds(5)) == true)
    }

    /// A cycle reports first, then observes again to plan. A task begun before a restart (here a
    /// stop) that ends in between leaves nothing to plan and a stale report: the outcome says the
    /// box moved, so the agent reports again (found by the random kill soak: the drift view kept a
    /// stopped guest "running").
    @Test func anObservationThatMovedSinceTheReportIsNoticed() {
        func report(_ guests: [HostReport.Guest]) -> HostReport {
            HostReport(
                reportedAt: Date(timeIntervalSince1970: 0), agentVersion: "x",
                host: .init(cpu: 0, memoryTotal: 0, memoryUsed: 0, diskTotal: 0, diskUsed: 0, uptime: 0, load: [], kernel: "", pveVersion: ""),
                guests: guests, cloudflared: .unknown)
        }
        func spec(_ memory: Int) -> HostReport.GuestSpec {
            HostReport.GuestSpec(cores: 2, cpuunits: 200, memory: memory, disk: 8, description: "apps\n", mountPoints: [])
        }
        func observed(_ vmid: Int, _ status: ObservedGuest.Status, mem: Int = 2048, readable: Bool = true) -> ObservedGuest {
            PlanTests().observed(vmid, status, mem: mem, readable: readable)
        }
        var outcome = Engine.Outcome(planned: [])
        outcome.observed = [observed(100, .stopped), observed(101, .running, mem: 512)]
        let stale = report([
            .init(vmid: 100, name: "web", status: .running, spec: spec(2048)), .init(vmid: 101, name: "db", status: .running, spec: spec(512)),
        ])
        #expect(outcome.observedDiffers(from: stale), "100 stopped since the report")
        let same = report([
            .init(vmid: 100, name: "web", status: .stopped, spec: spec(2048)), .init(vmid: 101, name: "db", status: .running, spec: spec(512)),
        ])
        #expect(!outcome.observedDiffers(from: same))
        let memory = report([
            .init(vmid: 100, name: "web", status: .stopped, spec: spec(1024)), .init(vmid: 101, name: "db", status: .running, spec: spec(512)),
        ])
        #expect(outcome.observedDiffers(from: memory), "memory changed")
        let gone = report([.init(vmid: 100, name: "web", status: .stopped, spec: spec(2048))])
        #expect(outcome.observedDiffers(from: gone), "a guest appeared")
        // Unreadable on both sides (no spec, no config) is not a change.
        outcome.observed = [observed(100, .stopped, readable: false)]
        #expect(!outcome.observedDiffers(from: report([.init(vmid: 100, name: "web", status: .stopped, spec: nil)])))
    }
}
