import FelhomAPI
import FelhomCore
import Foundation

/// Host capacity, guest placement and customer quotas (ADR 0012, SPEC §6 "CPU and memory",
/// "Quotas per customer"). Pure arithmetic: the hub's desired-state paths feed it what the store
/// holds and turn its answers into refusals.
///
/// - Allocatable CPU = physical cores × `cpu_overcommit`; a guest's `cpu` is a decimal vCPU share.
/// - Allocatable memory = physical memory − `reserved_host_memory_mb` − `memory_safety_buffer_mb`;
///   a guest's `memory_mb` is its hard cap, so the caps must fit.
/// - Usage of a host counts its saved desired state: the draft or the published one, whichever is
///   larger (per resource), so an unpublished edit and what runs are both covered.
public enum Placement {
    /// The hub's capacity settings.
    public struct Policy: Sendable, Equatable {
        public var cpuOvercommit: Double = 4.0
        public var reservedHostMemoryMB: Int = 1024
        public var memorySafetyBufferMB: Int = 512
        public init() {}
    }

    /// What a host can give its guests.
    public struct Capacity: Sendable, Equatable, Codable {
        /// vCPUs (physical cores × overcommit); nil when the host has not reported its core count.
        public var cpu: Double?
        public var memoryMB: Int

        public init(cpu: Double?, memoryMB: Int) {
            self.cpu = cpu
            self.memoryMB = memoryMB
        }

        enum CodingKeys: String, CodingKey {
            case cpu
            case memoryMB = "memory_mb"
        }
    }

    /// The allocatable capacity from a host's physical figures.
    public static func allocatable(cores: Int?, memoryTotalBytes: Int64, policy: Policy) -> Capacity {
        let physicalMB = Int(memoryTotalBytes / (1 << 20))
        return Capacity(
            cpu: cores.map { Double($0) * policy.cpuOvercommit },
            memoryMB: max(0, physicalMB - policy.reservedHostMemoryMB - policy.memorySafetyBufferMB))
    }

    /// What a desired state asks for.
    public typealias Usage = ResourceUsage

    /// The usage of one desired state (nil: nothing).
    public static func usage(_ spec: DesiredState?) -> Usage {
        guard let spec else { return Usage() }
        // Sum in hundredths of a vCPU: 0.1 + 0.2 is exactly 0.3 here.
        let hundredths = spec.guests.reduce(0) { $0 + Int(($1.cpu * 100).rounded()) }
        return Usage(
            cpu: Double(hundredths) / 100, memoryMB: spec.guests.reduce(0) { $0 + $1.memoryMB }, guests: spec.guests.count,
            routes: spec.routes.count, publicIPv4: spec.guests.filter(\.publicIPv4).count)
    }

    /// The usage a host counts: its draft or its published state, whichever is larger.
    public static func hostUsage(draft: DesiredState?, published: DesiredState?) -> Usage {
        Usage.larger(usage(draft), usage(published))
    }

    /// A desired state that does not fit its host.
    public struct CapacityRefusal: Error, Sendable, Equatable, CustomStringConvertible {
        public var hostID: String
        /// `memory` or `cpu`.
        public var resource: String
        public var requested: Double
        public var allocatable: Double

        public var description: String {
            let unit = resource == "memory" ? " MiB" : " vCPU"
            return
                "host \(hostID): the guests' \(resource) adds up to \(Self.text(requested))\(unit), more than the \(Self.text(allocatable))\(unit) it can allocate"
        }

        static func text(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(format: "%.2f", v) }
    }

    /// Whether `usage` fits `capacity` (memory first, then CPU when the core count is known).
    public static func checkCapacity(hostID: String, usage: Usage, capacity: Capacity) -> CapacityRefusal? {
        if usage.memoryMB > capacity.memoryMB {
            return CapacityRefusal(hostID: hostID, resource: "memory", requested: Double(usage.memoryMB), allocatable: Double(capacity.memoryMB))
        }
        if let cpu = capacity.cpu, usage.cpu > cpu + 1e-9 {
            return CapacityRefusal(hostID: hostID, resource: "cpu", requested: usage.cpu, allocatable: cpu)
        }
        return nil
    }

    // MARK: Placement

    /// A host a new guest could go to.
    public struct Candidate: Sendable, Equatable {
        public var hostID: String
        /// Nil: the host never reported (not a candidate: its capacity is unknown).
        public var capacity: Capacity?
        public var usage: Usage

        public init(hostID: String, capacity: Capacity?, usage: Usage) {
            self.hostID = hostID
            self.capacity = capacity
            self.usage = usage
        }
    }

    /// Where the guest goes, and why.
    public struct Choice: Sendable, Equatable {
        public var hostID: String
        public var freeMemoryMB: Int
        public var freeCPU: Double?
        public var reason: String
    }

    /// Why a host cannot take the guest: the binding resource.
    public struct Miss: Sendable, Equatable, Codable {
        public var hostID: String
        /// `memory`, `cpu` or `capacity_unknown`.
        public var resource: String
        public var free: Double?
        public var requested: Double

        enum CodingKeys: String, CodingKey {
            case resource, free, requested
            case hostID = "host_id"
        }
    }

    /// The candidate with the most free allocatable memory that fits both the memory cap and
    /// the CPU share (ties: the lower host id); otherwise every host's binding resource.
    public static func place(cpu: Double, memoryMB: Int, candidates: [Candidate]) -> Result<Choice, PlacementFailure> {
        var fits: [(Candidate, Int, Double?)] = []
        var misses: [Miss] = []
        for c in candidates.sorted(by: { $0.hostID < $1.hostID }) {
            guard let capacity = c.capacity else {
                misses.append(Miss(hostID: c.hostID, resource: "capacity_unknown", free: nil, requested: Double(memoryMB)))
                continue
            }
            let freeMemory = capacity.memoryMB - c.usage.memoryMB
            let freeCPU = capacity.cpu.map { $0 - c.usage.cpu }
            if freeMemory < memoryMB {
                misses.append(Miss(hostID: c.hostID, resource: "memory", free: Double(freeMemory), requested: Double(memoryMB)))
            } else if let freeCPU, freeCPU + 1e-9 < cpu {
                misses.append(Miss(hostID: c.hostID, resource: "cpu", free: (freeCPU * 100).rounded() / 100, requested: cpu))
            } else {
                fits.append((c, freeMemory, freeCPU))
            }
        }
        guard let best = fits.max(by: { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0.hostID > $1.0.hostID) }) else {
            return .failure(PlacementFailure(misses: misses))
        }
        let others = fits.count - 1
        var reason = "most free memory that fits: \(best.1) MiB free for \(memoryMB) MiB"
        if let cpu = best.2 { reason += ", \(CapacityRefusal.text((cpu * 100).rounded() / 100)) vCPU free" }
        if others > 0 { reason += " (\(others) other host\(others == 1 ? "" : "s") would fit too)" }
        return .success(Choice(hostID: best.0.hostID, freeMemoryMB: best.1, freeCPU: best.2, reason: reason))
    }

    /// No host fits: each host and its binding resource.
    public struct PlacementFailure: Error, Sendable, Equatable {
        public var misses: [Miss]
    }

    // MARK: Quotas

    /// A customer's limits (nil: no limit).
    public typealias Quotas = CustomerQuotas

    /// A change that would take a customer past a quota.
    public struct QuotaRefusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// The quota's field name (`max_memory_mb`, …).
        public var quota: String
        public var limit: Int
        /// The customer's usage before the change.
        public var usage: Int
        /// What the change adds.
        public var requested: Int

        public var description: String {
            "\(quota) is \(limit): the customer uses \(usage) and this change adds \(requested) (\(usage + requested) in all)"
        }
    }

    /// Each quota by its field name: (name, limit, the usage figure it limits).
    static func entries(_ q: Quotas, _ u: Usage) -> [(name: String, limit: Int?, used: Int)] {
        [
            ("max_memory_mb", q.maxMemoryMB, u.memoryMB), ("max_guests", q.maxGuests, u.guests), ("max_routes", q.maxRoutes, u.routes),
            ("max_public_ipv4", q.maxPublicIPv4, u.publicIPv4),
        ]
    }

    /// Refuses a change from `before` to `after` that raises a resource past its limit. A change
    /// that does not raise it passes even when the customer is already over (a lowered quota
    /// never blocks shrinking or unrelated edits).
    public static func checkQuotas(_ quotas: Quotas, before: Usage, after: Usage) -> QuotaRefusal? {
        let old = entries(quotas, before)
        for (i, entry) in entries(quotas, after).enumerated() {
            guard let limit = entry.limit, entry.used > limit, entry.used > old[i].used else { continue }
            return QuotaRefusal(quota: entry.name, limit: limit, usage: old[i].used, requested: entry.used - old[i].used)
        }
        return nil
    }

    /// The quotas `usage` is over (a quota lowered below what is in use: flagged, nothing destroyed).
    public static func exceeded(_ quotas: Quotas, usage: Usage) -> [String] {
        entries(quotas, usage).compactMap { e in e.limit.map { e.used > $0 } == true ? e.name : nil }
    }
}
