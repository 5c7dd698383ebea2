import FelhomAgent
import FelhomCore
import FelhomTestSupport
import Foundation
import PVESimulator
import Proxmox
import Synchronization
import Testing

@Suite struct ControllerHealerTests {
    /// Remedies that only record what they were asked to do.
    final class Calls: Sendable {
        let log = Mutex<[String]>([])
        var all: [String] { log.withLock { $0 } }
        var remedies: ControllerHealer.Remedies {
            ControllerHealer.Remedies(
                restartController: { vmid in self.log.withLock { $0.append("controller \(vmid)") } },
                restartGuest: { vmid in self.log.withLock { $0.append("guest \(vmid)") } })
        }
    }

    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    func at(_ seconds: TimeInterval) -> Date { t0.addingTimeInterval(seconds) }

    @Test func aControllerThatCallsIsLeftAloneAndANewGuestGetsGrace() async {
        let calls = Calls()
        let healer = ControllerHealer(settings: .init(silentAfter: 900, recheck: 180), remedies: calls.remedies)
        #expect(await healer.tick(watched: [100, 101], now: at(0)).isEmpty, "first seen now: grace from here")
        for minute in 1...30 {
            healer.seen(vmid: 100, at: at(Double(minute) * 60))
            #expect(await healer.tick(watched: [100], now: at(Double(minute) * 60 + 1)).isEmpty)
        }
        #expect(calls.all == [], "101 left the watched set before its bound; 100 called every minute")
    }

    @Test func aSilentControllerIsRestartedAndHealedByThatStep() async {
        let calls = Calls()
        let healer = ControllerHealer(settings: .init(silentAfter: 900, recheck: 180), remedies: calls.remedies)
        healer.seen(vmid: 100, at: at(0))
        #expect(await healer.tick(watched: [100], now: at(899)).isEmpty)
        #expect(calls.all == [])
        #expect(await healer.tick(watched: [100], now: at(900)).isEmpty)
        #expect(calls.all == ["controller 100"])
        #expect(await healer.tick(watched: [100], now: at(960)).isEmpty, "waits `recheck` for a call")
        healer.seen(vmid: 100, at: at(1000))
        let events = await healer.tick(watched: [100], now: at(1010))
        #expect(events.map(\.type) == ["controller_healed"])
        #expect(events.first?.data["step"] == "controller_restart")
        #expect(calls.all == ["controller 100"], "the guest was never restarted")
        #expect(await healer.tick(watched: [100], now: at(1800)).isEmpty, "healed: the clock starts again from its last call")
    }

    @Test func stillSilentTheGuestIsRestartedThenItIsUnhealthyOnceAndLeftAlone() async {
        let calls = Calls()
        let healer = ControllerHealer(settings: .init(silentAfter: 900, recheck: 180), remedies: calls.remedies)
        healer.seen(vmid: 100, at: at(0))
        _ = await healer.tick(watched: [100], now: at(900))
        #expect(await healer.tick(watched: [100], now: at(1080)).isEmpty)
        #expect(calls.all == ["controller 100", "guest 100"])
        let events = await healer.tick(watched: [100], now: at(1260))
        #expect(events.map(\.type) == ["controller_unhealthy"])
        #expect(events.first?.severity == .critical)
        for s in stride(from: 1300.0, through: 5000, by: 200) {
            #expect(await healer.tick(watched: [100], now: at(s)).isEmpty, "said once, nothing more is tried")
        }
        #expect(calls.all == ["controller 100", "guest 100"])
        healer.seen(vmid: 100, at: at(6000))
        let back = await healer.tick(watched: [100], now: at(6001))
        #expect(back.map(\.type) == ["controller_healed"] && back.first?.data["step"] == "recovered")
    }

    @Test func aFailingControllerRestartStillMovesOnToTheGuestRestart() async {
        let log = Mutex<[String]>([])
        struct Boom: Error {}
        let healer = ControllerHealer(
            settings: .init(silentAfter: 60, recheck: 30),
            remedies: .init(
                restartController: { _ in
                    log.withLock { $0.append("controller") }
                    throw Boom()
                },
                restartGuest: { _ in log.withLock { $0.append("guest") } }))
        healer.seen(vmid: 100, at: at(0))
        _ = await healer.tick(watched: [100], now: at(60))
        _ = await healer.tick(watched: [100], now: at(90))
        #expect(log.withLock { $0 } == ["controller", "guest"])
    }

    @Test func theRemediesRestartTheControllerInsideTheGuestThenTheGuestItself() async throws {
        try await withSim { h in
            await h.engine.setAppHealth(vmid: 100, json: #"[{"name":"photos","state":"running"}]"#)
            let remedies = Agent.healRemedies(
                backend: PrivilegedBackend(runner: SimCommandRunner(engine: h.engine)), pve: try h.client(), node: "pve1", queue: GuestQueue(),
                taskTimeout: .seconds(30))
            try await remedies.restartController(100)
            #expect(await h.engine.controllerRestarts[100] == 1, "pct exec 100 -- systemctl restart felhom-controller")
            try await remedies.restartGuest(100)
            let snap = await h.engine.snapshot()
            let types = snap.tasks.filter { $0.id == "100" }.map(\.type)
            #expect(types.suffix(2) == ["vzshutdown", "vzstart"], "\(types)")
            #expect(snap.containers[100]?.running == true)
            await #expect(throws: PrivilegedError.self) { try await remedies.restartController(101) }  // stopped guest
        }
    }

    @Test func theArgumentVectorIsFixed() throws {
        #expect(try PrivilegedBackend.restartControllerArguments(vmid: 100) == ["exec", "100", "--", "systemctl", "restart", "felhom-controller"])
        #expect(throws: PrivilegedError.self) { try PrivilegedBackend.restartControllerArguments(vmid: 5) }
    }

    @Test func theGateAllowsHealingARestartAndNothingElse() {
        let target = Gate.Target(dataBearing: true)
        #expect(Gate.decide(.restart, provenance: .heal, target: target) == .allowed)
        for m in [Gate.Mutation.stop, .setConfig, .destroy, .rollback, .restoreOver] {
            guard case .refused = Gate.decide(m, provenance: .heal, target: target) else {
                Issue.record("heal may not \(m.rawValue)")
                continue
            }
        }
    }
}
