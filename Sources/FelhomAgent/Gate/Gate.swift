import Foundation

/// The reversibility gate (SPEC §4): the one place that decides whether a mutation may run
/// without the operator's signature. Pure; every mutation of the agent asks it first.
public enum Gate {
    /// What is about to be done to a guest (or disk).
    public enum Mutation: String, Sendable, CaseIterable {
        case create, start, restart, stop, setConfig, destroy, rollback, restoreOver, diskDecommission
    }

    /// Where the request came from.
    public enum Provenance: String, Sendable, CaseIterable {
        /// The reconciler following published desired state.
        case desiredState
        /// A job (signed op delivered by the hub), verified by FelhomSigning.
        case signedOp
        /// Undoing what this same journaled operation created earlier.
        case compensation
        /// Healing a crashed controller.
        case heal
    }

    /// What is known about the target.
    public struct Target: Sendable, Equatable {
        /// It holds customer data (any guest not tagged ephemeral, any attached disk).
        public var dataBearing: Bool
        /// Tagged ephemeral (restore-test scratch guest).
        public var ephemeral: Bool
        /// Created earlier in the same journaled operation.
        public var createdBySameOperation: Bool

        public init(dataBearing: Bool, ephemeral: Bool = false, createdBySameOperation: Bool = false) {
            self.dataBearing = dataBearing
            self.ephemeral = ephemeral
            self.createdBySameOperation = createdBySameOperation
        }
    }

    public enum Decision: Sendable, Equatable {
        case allowed
        /// Refused unless a verified operator signature covers it; the reason says why.
        case needsSignature(String)
        /// Never done this way (e.g. healing by destroying).
        case refused(String)
    }

    /// `signatureVerified` is true only for a `.signedOp` the agent verified itself.
    public static func decide(_ m: Mutation, provenance: Provenance, target: Target, signatureVerified: Bool = false) -> Decision {
        let destructive: Bool
        switch m {
        case .create, .start, .restart: return .allowed
        case .stop, .setConfig:
            // Reversible, no data lost; healing never stops or rewrites a guest.
            if provenance == .heal { return .refused("a crashed controller is healed by a restart inside its guest") }
            return .allowed
        case .destroy, .rollback, .restoreOver, .diskDecommission: destructive = true
        }
        precondition(destructive)
        if provenance == .heal { return .refused("healing never destroys or overwrites: restart inside the guest") }
        if m == .destroy && provenance == .compensation && target.createdBySameOperation { return .allowed }
        if m == .destroy && target.ephemeral && !target.dataBearing { return .allowed }
        if !target.dataBearing && target.createdBySameOperation { return .allowed }
        if provenance == .signedOp && signatureVerified { return .allowed }
        return .needsSignature("\(m.rawValue) would destroy or overwrite customer data: it needs a verified operator signature")
    }
}

/// A mutation the gate refused (it needs a verified operator signature, or is never done that way).
public struct GateError: Error, Sendable, CustomStringConvertible {
    public var mutation: Gate.Mutation
    public var decision: Gate.Decision
    public var description: String {
        switch decision {
        case .allowed: return "gate: \(mutation.rawValue) allowed"
        case .needsSignature(let why), .refused(let why): return "gate refused \(mutation.rawValue): \(why)"
        }
    }
}
