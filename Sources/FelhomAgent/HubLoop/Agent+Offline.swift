import FelhomCore
import FelhomHubClient
import Foundation

/// Working without the hub: the box keeps enforcing the last desired state it was given.
///
/// After every reconcile the agent keeps that desired state in `state_dir/desired-last.json`
/// (durably, only when it changed). While the hub cannot be reached, each retry of the service
/// loop reconciles against it: a guest that stopped is started again, a changed limit is put
/// back, a missing guest is provisioned. Nothing that needs the hub runs offline (signed ops,
/// events, reports), and nothing is ever destroyed (destruction needs an operator-signed op).
/// A blocked host forgets the file: it changes nothing, with or without the hub.
extension Agent {
    /// The file name, under `state_dir`.
    static let lastDesiredFile = "desired-last.json"

    /// Keeps `spec` (published as `generation`) for offline reconciles; a failure is logged,
    /// never fatal: the online cycle already did its work.
    func saveLastDesired(_ spec: DesiredState, generation: Int64) {
        guard case .object(let specJSON)? = try? JSONValue.parse(spec.encoded()) else { return }
        let bytes = Array(JSONValue.object(["generation": .int(generation), "spec": .object(specJSON)]).serialized())
        guard state.withLock({ $0.savedDesired != bytes }) else { return }
        do throws(AppendLogError) {
            try DurableFile.write(bytes, to: stateDir + "/" + Self.lastDesiredFile, mode: 0o600)
            state.withLock { $0.savedDesired = bytes }
        } catch {
            logger.warning("cannot keep the desired state for offline use: \(error.message)")
        }
    }

    /// Removes the kept desired state (the operator blocked this host).
    func forgetLastDesired() {
        state.withLock { $0.savedDesired = nil }
        unlink(stateDir + "/" + Self.lastDesiredFile)
    }

    /// The kept desired state and its generation: the one of the last cycle, else the file (after
    /// a restart while the hub is away). `nil` when there is none or the file does not decode.
    func lastDesired() -> (generation: Int64?, spec: DesiredState)? {
        if let kept = state.withLock({ st in st.lastSpec.map { (st.lastGeneration, $0) } }) { return kept }
        let path = stateDir + "/" + Self.lastDesiredFile
        if let data = FileManager.default.contents(atPath: path) {
            do {
                let doc = try JSONValue.parse(data)
                guard let spec = doc["spec"], case .object = spec else {
                    throw ContractError(path: "$.spec", message: "missing")
                }
                return (doc["generation"]?.lenientInt, try DesiredState.decode(spec.serialized()))
            } catch {
                logger.warning("ignoring \(path): \(error)")
            }
        }
        return nil
    }

    /// One reconcile against the kept desired state, while the hub is unreachable.
    func reconcileOffline() async {
        guard state.withLock({ !($0.lastEnvelope?.blocked ?? false) }), let (generation, spec) = lastDesired() else { return }
        // A replacement box waiting for `recover` provisions nothing, online or not.
        if FileManager.default.fileExists(atPath: stateDir + "/" + Self.recoveryPendingFile) { return }
        let label = "the last published state" + (generation.map { " (generation \($0))" } ?? "")
        do {
            let outcome = try await engine.reconcile(desired: spec)
            state.withLock {
                $0.lastSpec = spec
                $0.lastGeneration = generation
                $0.offlineReconciles += 1
            }
            if !outcome.planned.isEmpty || outcome.failed > 0 {
                logger.notice("the hub is unreachable: reconciled \(label): \(outcome.succeeded) done, \(outcome.failed) failed")
            } else {
                logger.info("the hub is unreachable: \(label) is in place")
            }
        } catch {
            logger.warning("the hub is unreachable and reconciling \(label) failed: \(error)")
        }
    }
}
