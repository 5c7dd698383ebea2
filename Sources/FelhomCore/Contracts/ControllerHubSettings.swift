import Foundation

/// What the hub's generated controller config (`GET /api/v1/guests/{id}/config`) may decide, and
/// what it may not (issue 13 item 6).
///
/// Only app-level timings, each within a range, and informational keys (`guest`, `domain`). Every
/// key that names a path, an endpoint, a credential or a fingerprint — and `quiesce.enabled`, and
/// `stacks.protected` (protecting every stack would switch quiescing off just the same) — comes only
/// from the guest's local file or environment: a compromised hub must not redirect the controller,
/// harvest its tokens or stop backups from being app-consistent. The hub refuses overrides outside
/// this list and never generates them; the controller ignores them with a warning.
public enum ControllerHubSettings {
    /// The settings the hub may set, with the values it may set them to.
    public static let allowed: [String: ClosedRange<Int64>] = [
        "quiesce.poll_seconds": 10...3600,
        "quiesce.max_seconds": 60...7200,
        "watchdog.interval_seconds": 5...600,
    ]
    /// Top-level keys that only describe the guest (shown, never acted on).
    public static let informational: Set<String> = ["guest", "domain"]

    /// One problem with a key of a hub-provided config.
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var message: String
        public var description: String { "\(path): \(message)" }
    }

    /// The allowed settings found in `config`, and a finding for every other key (informational
    /// keys aside). Pure: the hub uses it to refuse overrides, the controller to ignore keys.
    public static func read(_ config: JSONValue) -> (values: [String: Int64], findings: [Finding]) {
        var values: [String: Int64] = [:]
        var findings: [Finding] = []
        func walk(_ value: JSONValue, _ path: [String]) {
            let dotted = path.joined(separator: ".")
            if path.count == 1, informational.contains(path[0]) { return }
            if let range = allowed[dotted] {
                guard case .int(let n) = value else {
                    findings.append(Finding(path: "$." + dotted, message: "must be an integer"))
                    return
                }
                guard range.contains(n) else {
                    findings.append(Finding(path: "$." + dotted, message: "must be within \(range.lowerBound)…\(range.upperBound)"))
                    return
                }
                values[dotted] = n
                return
            }
            if case .object(let o) = value, path.isEmpty || allowed.keys.contains(where: { $0.hasPrefix(dotted + ".") }) {
                for (k, v) in o.sorted(by: { $0.key < $1.key }) { walk(v, path + [k]) }
                return
            }
            findings.append(
                Finding(
                    path: "$." + dotted,
                    message: isLocalOnly(dotted)
                        ? "comes only from the guest's local controller config (paths, endpoints, credentials, fingerprints, quiesce.enabled, stacks.protected)"
                        : "not a setting the hub may set (allowed: \(allowed.keys.sorted().joined(separator: ", ")))"))
        }
        walk(config, [])
        return (values, findings)
    }

    /// Whether `path` is one of the controller's local-only settings.
    public static func isLocalOnly(_ path: String) -> Bool {
        let first = path.split(separator: ".").first.map(String.init) ?? path
        return ["stacks", "state_dir", "secrets", "agent", "hub"].contains(first) || path == "quiesce.enabled"
    }
}
