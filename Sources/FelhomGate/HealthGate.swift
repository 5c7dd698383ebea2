import Foundation

/// The self-update health gate (seed review S2, SPEC §4 "Self-update"): the one authority that
/// keeps or reverts a new agent binary, running outside it. Pure decision (``decide``) apart from
/// the file work (``check``).
///
/// After the agent points `current` at a new slot and exits, systemd starts the new binary. It
/// must write a ``HealthRecord`` with its version, after the flip, within `window_seconds`; the
/// gate commits once such a record exists, at least `settle_seconds` have passed since the flip,
/// and the record is fresh (the agent is still writing it). Otherwise, when the window ends, the
/// gate points `current` back at the last good slot and restarts the agent. A binary that crashes
/// at start never writes health, so it is reverted the same way — nothing inside it is trusted.
public enum HealthGate {
    /// What to do now.
    public enum Decision: Sendable, Equatable {
        /// Nothing pending.
        case idle
        /// Pending, not decided yet: look again.
        case wait
        case commit
        case revert(reason: String)
    }

    /// A health record older than this is stale: the agent stopped writing it (seconds).
    public static let freshSeconds: TimeInterval = 180

    /// The verdict for `state` given the newest health record, the slot `current` points at and now.
    public static func decide(state: GateState?, health: HealthRecord?, currentSlot: String?, now: Date) -> Decision {
        guard let p = state?.pending else { return .idle }
        let elapsed = now.timeIntervalSince(p.flippedAt)
        let expired = elapsed > TimeInterval(p.windowSeconds)
        guard currentSlot == p.slot else {
            // The flip was recorded but `current` does not point at the new slot (a crash between
            // the two, or someone changed the link): there is nothing to keep.
            return expired ? .revert(reason: "the update never switched to slot \(p.slot)") : .wait
        }
        if let h = health, h.version == p.version, h.at >= p.flippedAt {
            let settled = elapsed >= TimeInterval(p.settleSeconds)
            let fresh = now.timeIntervalSince(h.at) <= freshSeconds
            if settled && fresh { return .commit }
            if !fresh && expired { return .revert(reason: "\(p.version) was healthy once but stopped reporting health") }
            if !expired || !settled { return .wait }
        }
        guard expired else { return .wait }
        if let h = health, h.at >= p.flippedAt, h.version != p.version {
            return .revert(reason: "the running agent says it is \(h.version), not \(p.version)")
        }
        return .revert(reason: "\(p.version) did not report healthy within \(p.windowSeconds) s (it crashed at start or never completed a cycle)")
    }

    /// What ``check(root:now:restart:)`` did.
    public enum Action: Sendable, Equatable {
        case idle, waiting
        case committed(version: String)
        case reverted(version: String, to: String, reason: String)
    }

    /// One look at the install root: decides, and on a verdict points `current`, rewrites
    /// gate.json and result.json (under gate.lock), then runs `restart` after a revert.
    public static func check(root: UpdateRoot, now: Date = Date(), restart: () throws -> Void) throws -> Action {
        let action: Action = try root.locked { () throws(UpdateRootError) -> Action in
            let state = try root.readState()
            let health: HealthRecord?
            // A damaged health record counts as none (it is written atomically; this is belt and braces).
            do throws(UpdateRootError) { health = try root.readHealth() } catch  where error.code == .damaged { health = nil }
            let decision = decide(state: state, health: health, currentSlot: root.currentSlot(), now: now)
            guard var s = state, let p = s.pending else { return .idle }
            switch decision {
            case .idle: return .idle
            case .wait: return .waiting
            case .commit:
                s.lastGood = p.slot
                s.committedVersion = p.version
                s.pending = nil
                try root.writeResult(
                    GateResult(op: p.op, outcome: .committed, version: p.version, previousVersion: p.previousVersion, reason: nil, at: now))
                try root.writeState(s)
                return .committed(version: p.version)
            case .revert(let reason):
                if root.currentSlot() != s.lastGood { try root.point(at: s.lastGood) }
                s.pending = nil
                try root.writeResult(
                    GateResult(op: p.op, outcome: .reverted, version: p.version, previousVersion: p.previousVersion, reason: reason, at: now))
                try root.writeState(s)
                return .reverted(version: p.version, to: s.lastGood, reason: reason)
            }
        }
        if case .reverted = action { try restart() }
        return action
    }
}
