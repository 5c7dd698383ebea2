import FelhomCore
import Foundation
import Synchronization

/// Heals a guest whose controller went silent (seed review B1): a controller calls the local API
/// at least every quiesce poll (60 s by default); one that has not called for `silentAfter` is
/// restarted inside its guest (`pct exec … systemctl restart felhom-controller`), and if it is
/// still silent `recheck` later, the guest itself is restarted — through the gate's heal path,
/// which allows a restart and nothing else (never a stop, a rollback or a destroy). Still silent
/// after that: `controller_unhealthy` (critical), once, and no more action until it calls again.
/// A controller that calls again after a step: `controller_healed` with the step that helped.
///
/// Only guests that have a local API token (their controller was given credentials) and that the
/// desired state wants running are watched. A guest first seen by this process gets `silentAfter`
/// of grace from then (an agent restart never triggers a heal by itself).
public final class ControllerHealer: Sendable {
    /// How long to wait.
    public struct Settings: Sendable {
        /// No local API call for this long: restart the controller (default 15 min).
        public var silentAfter: TimeInterval
        /// After each step, how long to wait for a call before the next step (default 3 min).
        public var recheck: TimeInterval
        public init(silentAfter: TimeInterval = 900, recheck: TimeInterval = 180) {
            self.silentAfter = silentAfter
            self.recheck = recheck
        }
    }

    /// What was last done for a silent guest.
    enum Stage: Sendable, Equatable {
        case controllerRestarted(Date)
        case guestRestarted(Date)
        case unhealthy(Date)
    }

    struct State {
        var lastSeen: [Int: Date] = [:]
        var stage: [Int: Stage] = [:]
    }

    /// One thing to tell the hub.
    public typealias Event = AgentEvent

    /// The two remedies, run by the agent through the per-guest queue.
    public struct Remedies: Sendable {
        public var restartController: @Sendable (Int) async throws -> Void
        public var restartGuest: @Sendable (Int) async throws -> Void
        public init(
            restartController: @escaping @Sendable (Int) async throws -> Void, restartGuest: @escaping @Sendable (Int) async throws -> Void
        ) {
            self.restartController = restartController
            self.restartGuest = restartGuest
        }
    }

    let settings: Settings
    let remedies: Remedies
    let log: @Sendable (String) -> Void
    let state = Mutex(State())

    public init(settings: Settings = Settings(), remedies: Remedies, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.settings = settings
        self.remedies = remedies
        self.log = log
    }

    /// When guest `vmid`'s controller last called the local API (nil: not since this process started).
    public func lastSeen(vmid: Int) -> Date? { state.withLock { $0.lastSeen[vmid] } }

    /// A controller called the local API (any authenticated request).
    public func seen(vmid: Int, at now: Date = Date()) {
        state.withLock { $0.lastSeen[vmid] = now }
    }

    /// One round over `watched` (running guests with a controller token): takes the next step for
    /// each silent one, and returns the events to post. Guests no longer watched are forgotten.
    public func tick(watched: Set<Int>, now: Date = Date()) async -> [Event] {
        var events: [Event] = []
        var steps: [(Int, Stage?)] = []
        state.withLock { s in
            for vmid in s.lastSeen.keys where !watched.contains(vmid) { s.lastSeen[vmid] = nil }
            for vmid in s.stage.keys where !watched.contains(vmid) { s.stage[vmid] = nil }
            for vmid in watched.sorted() {
                let last = s.lastSeen[vmid] ?? now
                s.lastSeen[vmid] = last
                steps.append((vmid, s.stage[vmid]))
            }
        }
        for (vmid, stage) in steps {
            let last = state.withLock { $0.lastSeen[vmid] } ?? now
            let silent = now.timeIntervalSince(last)
            switch stage {
            case nil:
                guard silent >= settings.silentAfter else { continue }
                log("the controller of \(vmid) has not called for \(Int(silent)) s: restarting it inside the guest")
                do { try await remedies.restartController(vmid) } catch {
                    log("cannot restart the controller of \(vmid): \(error); the guest is restarted at the next step")
                }
                setStage(vmid, .controllerRestarted(now))
            case .controllerRestarted(let at), .guestRestarted(let at), .unhealthy(let at):
                if last > at {
                    let step: String
                    switch stage {
                    case .controllerRestarted: step = "controller_restart"
                    case .guestRestarted: step = "guest_restart"
                    default: step = "recovered"
                    }
                    log("the controller of \(vmid) calls again (after: \(step))")
                    events.append(
                        Event(
                            type: "controller_healed", severity: .warning,
                            data: ["vmid": .int(Int64(vmid)), "step": .string(step), "silent_seconds": .int(Int64(last.timeIntervalSince(at)))]))
                    setStage(vmid, nil)
                    continue
                }
                guard now.timeIntervalSince(at) >= settings.recheck else { continue }
                if case .controllerRestarted = stage {
                    let decision = Gate.decide(.restart, provenance: .heal, target: .init(dataBearing: true))
                    guard decision == .allowed else {
                        log("\(GateError(mutation: .restart, decision: decision))")
                        setStage(vmid, .guestRestarted(now))
                        continue
                    }
                    log("the controller of \(vmid) is still silent after its restart: restarting the guest")
                    do { try await remedies.restartGuest(vmid) } catch { log("cannot restart guest \(vmid): \(error)") }
                    setStage(vmid, .guestRestarted(now))
                } else if case .guestRestarted = stage {
                    log("the controller of \(vmid) is still silent after restarting it and its guest: controller_unhealthy")
                    events.append(
                        Event(
                            type: "controller_unhealthy", severity: .critical,
                            data: [
                                "vmid": .int(Int64(vmid)), "silent_seconds": .int(Int64(silent)),
                                "reason": .string("no local API call after restarting the controller and then the guest"),
                            ]))
                    setStage(vmid, .unhealthy(now))
                }
            }
        }
        return events
    }

    private func setStage(_ vmid: Int, _ stage: Stage?) {
        state.withLock { $0.stage[vmid] = stage }
    }
}
