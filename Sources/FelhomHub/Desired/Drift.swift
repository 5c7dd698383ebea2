import FelhomAPI
import FelhomCore
import Foundation

/// Desired vs last reported, per guest: a pure function the API and the dashboard share.
public enum Drift {
    /// Compares in vmid order. Without a report every desired guest is `missing`.
    public static func compute(desired: DesiredState?, report: HostReport?) -> [GuestDrift] {
        let want = Dictionary(uniqueKeysWithValues: (desired?.guests ?? []).map { ($0.vmid, $0) })
        let have = Dictionary((report?.guests ?? []).map { ($0.vmid, $0) }, uniquingKeysWith: { first, _ in first })
        return Set(want.keys).union(have.keys).sorted().map { vmid in
            switch (want[vmid], have[vmid]) {
            case (let d?, nil):
                return GuestDrift(state: .missing, vmid: vmid, name: d.name, desiredRunState: d.runState.rawValue, actualStatus: nil, differences: [])
            case (nil, let a?):
                return GuestDrift(
                    state: .unexpected, vmid: vmid, name: a.name, desiredRunState: nil, actualStatus: a.status.rawValue, differences: [])
            case (let d?, let a?):
                var diffs = a.spec.map { GuestComparison.specDifferences(d, $0) } ?? []
                if a.status != .unknown, a.status.rawValue != d.runState.rawValue {
                    diffs.append(.init(field: "run_state", desired: d.runState.rawValue, actual: a.status.rawValue))
                }
                let state =
                    a.spec == nil || a.status == .unknown ? (diffs.isEmpty ? DriftState.unknown : .differs) : (diffs.isEmpty ? .inSync : .differs)
                return GuestDrift(
                    state: state, vmid: vmid, name: d.name, desiredRunState: d.runState.rawValue, actualStatus: a.status.rawValue, differences: diffs)
            case (nil, nil):
                fatalError("unreachable: vmid comes from one of the two maps")
            }
        }
    }
}
