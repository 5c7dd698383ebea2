import Foundation

/// What a guest's controller sends the hub (SPEC §2): its app stacks, app telemetry, log issues
/// and storage paths. Collections are always present.
public struct GuestReport: Codable, Sendable, Equatable {
    /// One docker-compose stack.
    public struct Stack: Codable, Sendable, Equatable {
        public enum State: String, Codable, Sendable {
            case running, stopped, partial, unknown

            /// A value a newer controller may send decodes as `unknown` instead of failing the report.
            public init(from decoder: Decoder) throws {
                self = Self(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .unknown
            }
        }
        public var name: String
        public var state: State
        /// Infra stacks (traefik, cloudflared, the controller) are never stopped by the platform.
        public var protected: Bool

        public init(name: String, state: State, protected: Bool) {
            self.name = name
            self.state = state
            self.protected = protected
        }
    }

    public var reportedAt: Date
    public var controllerVersion: String
    public var stacks: [Stack]
    public var telemetry: [JSONValue]
    public var logIssues: [JSONValue]
    public var storagePaths: [JSONValue]

    public init(
        reportedAt: Date, controllerVersion: String, stacks: [Stack], telemetry: [JSONValue] = [], logIssues: [JSONValue] = [],
        storagePaths: [JSONValue] = []
    ) {
        self.reportedAt = reportedAt
        self.controllerVersion = controllerVersion
        self.stacks = stacks
        self.telemetry = telemetry
        self.logIssues = logIssues
        self.storagePaths = storagePaths
    }

    enum CodingKeys: String, CodingKey {
        case stacks, telemetry
        case reportedAt = "reported_at"
        case controllerVersion = "controller_version"
        case logIssues = "log_issues"
        case storagePaths = "storage_paths"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        reportedAt = try c.decodeContractTime(forKey: .reportedAt)
        controllerVersion = try c.decode(String.self, forKey: .controllerVersion)
        stacks = try c.decode([Stack].self, forKey: .stacks)
        telemetry = try c.decode([JSONValue].self, forKey: .telemetry)
        logIssues = try c.decode([JSONValue].self, forKey: .logIssues)
        storagePaths = try c.decode([JSONValue].self, forKey: .storagePaths)
    }

    /// Decodes and checks a report; errors name the JSON path.
    public static func decode(_ data: Data) throws -> GuestReport {
        let r: GuestReport = try ContractCoding.decode(data)
        var names = Set<String>()
        for (i, s) in r.stacks.enumerated() {
            guard Pattern.whole(s.name, #"[a-z0-9][a-z0-9_.-]{0,62}"#) else {
                throw ContractError(path: "$.stacks[\(i)].name", message: "must be a compose project name ([a-z0-9_.-], ≤63)")
            }
            guard names.insert(s.name).inserted else { throw ContractError(path: "$.stacks[\(i)].name", message: "duplicate stack \(s.name)") }
        }
        return r
    }

    /// The report as JSON (ISO 8601 times, sorted keys).
    public func encoded() -> Data { ContractCoding.encode(self) }
}
