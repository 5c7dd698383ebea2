import Foundation

/// The host's hardware as the agent reads it through its fenced root commands (SPEC §2 host
/// report, issue 20): SMART per disk (`smartctl --json`) and temperatures (`sensors -j`). Absent
/// from reports of agents that do not read hardware; a tool that fails or times out is an entry
/// of `errors`, never a failed report.
public struct HardwareHealth: Codable, Sendable, Equatable {
    /// One disk's SMART summary.
    public struct Disk: Codable, Sendable, Equatable {
        public enum Health: String, Codable, Sendable {
            case passed, failed, unknown
            public init(from decoder: Decoder) throws {
                self = Self(rawValue: try decoder.singleValueContainer().decode(String.self)) ?? .unknown
            }
        }
        public var device: String
        public var model: String?
        public var serial: String?
        /// SMART overall health (`smart_status.passed`; NVMe critical warnings count as failed).
        public var health: Health
        /// ATA attribute 5 (`Reallocated_Sector_Ct`) raw count, or NVMe media errors.
        public var reallocatedSectors: Int64?
        /// ATA attribute 197 (`Current_Pending_Sector`) raw count.
        public var pendingSectors: Int64?
        public var temperatureCelsius: Int?
        public var powerOnHours: Int64?

        public init(
            device: String, model: String? = nil, serial: String? = nil, health: Health, reallocatedSectors: Int64? = nil,
            pendingSectors: Int64? = nil, temperatureCelsius: Int? = nil, powerOnHours: Int64? = nil
        ) {
            self.device = device
            self.model = model
            self.serial = serial
            self.health = health
            self.reallocatedSectors = reallocatedSectors
            self.pendingSectors = pendingSectors
            self.temperatureCelsius = temperatureCelsius
            self.powerOnHours = powerOnHours
        }

        enum CodingKeys: String, CodingKey {
            case device, model, serial, health
            case reallocatedSectors = "reallocated_sectors"
            case pendingSectors = "pending_sectors"
            case temperatureCelsius = "temperature_celsius"
            case powerOnHours = "power_on_hours"
        }
    }

    /// One temperature sensor (`chip/label`).
    public struct Temperature: Codable, Sendable, Equatable {
        public var sensor: String
        public var celsius: Double
        /// `cpu` (coretemp, k10temp, zenpower), `disk` (nvme, drivetemp) or `other`.
        public var kind: String
        public init(sensor: String, celsius: Double, kind: String) {
            self.sensor = sensor
            self.celsius = celsius
            self.kind = kind
        }
    }

    public var disks: [Disk]
    public var temperatures: [Temperature]
    /// What could not be read (`smartctl /dev/sdb: …`, `sensors: timed out after 10 s`).
    public var errors: [String]
    public var readAt: Date

    public init(disks: [Disk] = [], temperatures: [Temperature] = [], errors: [String] = [], readAt: Date) {
        self.disks = disks
        self.temperatures = temperatures
        self.errors = errors
        self.readAt = readAt
    }

    enum CodingKeys: String, CodingKey {
        case disks, temperatures, errors
        case readAt = "read_at"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        disks = try c.decode([Disk].self, forKey: .disks)
        temperatures = try c.decode([Temperature].self, forKey: .temperatures)
        errors = try c.decode([String].self, forKey: .errors)
        readAt = try c.decodeContractTime(forKey: .readAt)
    }

    /// Bounds on what a box may claim (the hub stores it).
    public func validate(path: String) throws {
        guard disks.count <= 64, temperatures.count <= 256, errors.count <= 64 else {
            throw ContractError(path: path, message: "at most 64 disks, 256 temperatures and 64 errors")
        }
        for (i, d) in disks.enumerated() {
            guard d.device.utf8.count <= 128, (d.model?.utf8.count ?? 0) <= 128, (d.serial?.utf8.count ?? 0) <= 128 else {
                throw ContractError(path: "\(path).disks[\(i)]", message: "device, model and serial are at most 128 bytes")
            }
            for v in [d.reallocatedSectors, d.pendingSectors, d.powerOnHours].compactMap({ $0 }) where v < 0 {
                throw ContractError(path: "\(path).disks[\(i)]", message: "counts must not be negative")
            }
        }
        for (i, t) in temperatures.enumerated() where t.sensor.utf8.count > 128 || !t.celsius.isFinite || abs(t.celsius) > 1000 {
            throw ContractError(path: "\(path).temperatures[\(i)]", message: "a sensor name of at most 128 bytes and a finite reading")
        }
        for (i, e) in errors.enumerated() where e.utf8.count > 500 {
            throw ContractError(path: "\(path).errors[\(i)]", message: "at most 500 bytes")
        }
    }
}
