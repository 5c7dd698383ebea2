import Foundation

/// What desired states ask for: summed vCPU shares and memory caps, guests, routes, public IPv4
/// addresses (ADR 0012).
public struct ResourceUsage: Sendable, Equatable, Codable {
    public var cpu: Double = 0
    public var memoryMB: Int = 0
    public var guests: Int = 0
    public var routes: Int = 0
    public var publicIPv4: Int = 0

    public init(cpu: Double = 0, memoryMB: Int = 0, guests: Int = 0, routes: Int = 0, publicIPv4: Int = 0) {
        self.cpu = cpu
        self.memoryMB = memoryMB
        self.guests = guests
        self.routes = routes
        self.publicIPv4 = publicIPv4
    }

    enum CodingKeys: String, CodingKey {
        case cpu, guests, routes
        case memoryMB = "memory_mb"
        case publicIPv4 = "public_ipv4"
    }

    public static func + (a: ResourceUsage, b: ResourceUsage) -> ResourceUsage {
        ResourceUsage(
            cpu: a.cpu + b.cpu, memoryMB: a.memoryMB + b.memoryMB, guests: a.guests + b.guests, routes: a.routes + b.routes,
            publicIPv4: a.publicIPv4 + b.publicIPv4)
    }

    /// Per resource, the larger of the two.
    public static func larger(_ a: ResourceUsage, _ b: ResourceUsage) -> ResourceUsage {
        ResourceUsage(
            cpu: max(a.cpu, b.cpu), memoryMB: max(a.memoryMB, b.memoryMB), guests: max(a.guests, b.guests), routes: max(a.routes, b.routes),
            publicIPv4: max(a.publicIPv4, b.publicIPv4))
    }
}

/// A customer's quotas (`GET/PUT /api/v1/customers/{id}/quotas`); nil (JSON null or absent) is no limit.
public struct CustomerQuotas: Sendable, Equatable, Codable {
    public var maxMemoryMB: Int?
    public var maxGuests: Int?
    public var maxRoutes: Int?
    public var maxPublicIPv4: Int?

    public init(maxMemoryMB: Int? = nil, maxGuests: Int? = nil, maxRoutes: Int? = nil, maxPublicIPv4: Int? = nil) {
        self.maxMemoryMB = maxMemoryMB
        self.maxGuests = maxGuests
        self.maxRoutes = maxRoutes
        self.maxPublicIPv4 = maxPublicIPv4
    }

    enum CodingKeys: String, CodingKey {
        case maxMemoryMB = "max_memory_mb"
        case maxGuests = "max_guests"
        case maxRoutes = "max_routes"
        case maxPublicIPv4 = "max_public_ipv4"
    }
}

extension CustomerQuotas {
    /// Every field is written, a missing limit as `null`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(maxMemoryMB, forKey: .maxMemoryMB)
        try c.encode(maxGuests, forKey: .maxGuests)
        try c.encode(maxRoutes, forKey: .maxRoutes)
        try c.encode(maxPublicIPv4, forKey: .maxPublicIPv4)
    }

    /// Whether any limit is set.
    public var isEmpty: Bool { self == CustomerQuotas() }
}

/// The answer of `GET/PUT /api/v1/customers/{id}/quotas`: the quotas, the customer's usage (each
/// host's draft or published state, whichever is larger) and which quotas it is over (a quota
/// lowered below what is in use is allowed: flagged here, nothing is destroyed).
public struct QuotaView: Codable, Sendable, Equatable {
    public var maxMemoryMB: Int?
    public var maxGuests: Int?
    public var maxRoutes: Int?
    public var maxPublicIPv4: Int?
    public var usage: ResourceUsage
    /// Field names of the quotas the usage is over.
    public var exceeded: [String]

    public init(quotas: CustomerQuotas, usage: ResourceUsage, exceeded: [String]) {
        maxMemoryMB = quotas.maxMemoryMB
        maxGuests = quotas.maxGuests
        maxRoutes = quotas.maxRoutes
        maxPublicIPv4 = quotas.maxPublicIPv4
        self.usage = usage
        self.exceeded = exceeded
    }

    public var quotas: CustomerQuotas {
        CustomerQuotas(maxMemoryMB: maxMemoryMB, maxGuests: maxGuests, maxRoutes: maxRoutes, maxPublicIPv4: maxPublicIPv4)
    }

    enum CodingKeys: String, CodingKey {
        case usage, exceeded
        case maxMemoryMB = "max_memory_mb"
        case maxGuests = "max_guests"
        case maxRoutes = "max_routes"
        case maxPublicIPv4 = "max_public_ipv4"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(maxMemoryMB, forKey: .maxMemoryMB)
        try c.encode(maxGuests, forKey: .maxGuests)
        try c.encode(maxRoutes, forKey: .maxRoutes)
        try c.encode(maxPublicIPv4, forKey: .maxPublicIPv4)
        try c.encode(usage, forKey: .usage)
        try c.encode(exceeded, forKey: .exceeded)
    }
}

/// A host's allocatable capacity next to what its desired state uses (the dashboard's bars,
/// `GET /api/v1/hosts/{id}/capacity`).
public struct HostCapacityView: Codable, Sendable, Equatable {
    public var hostID: String
    /// Allocatable vCPUs (cores × `cpu_overcommit`); nil until the host reports its core count.
    public var allocatableCPU: Double?
    /// Allocatable memory (physical − reserved − buffer); nil until the host reports.
    public var allocatableMemoryMB: Int?
    public var usage: ResourceUsage

    public init(hostID: String, allocatableCPU: Double?, allocatableMemoryMB: Int?, usage: ResourceUsage) {
        self.hostID = hostID
        self.allocatableCPU = allocatableCPU
        self.allocatableMemoryMB = allocatableMemoryMB
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey {
        case usage
        case hostID = "host_id"
        case allocatableCPU = "allocatable_cpu"
        case allocatableMemoryMB = "allocatable_memory_mb"
    }
}

/// The answer of `POST /api/v1/customers/{id}/guests`: where the guest went and why.
public struct GuestPlacement: Codable, Sendable, Equatable {
    public var hostID: String
    public var vmid: Int
    public var reason: String
    public var freeMemoryMB: Int
    public var freeCPU: Double?
    /// The draft the guest was written into is not published yet.
    public var published: Bool

    public init(hostID: String, vmid: Int, reason: String, freeMemoryMB: Int, freeCPU: Double?, published: Bool = false) {
        self.hostID = hostID
        self.vmid = vmid
        self.reason = reason
        self.freeMemoryMB = freeMemoryMB
        self.freeCPU = freeCPU
        self.published = published
    }

    enum CodingKeys: String, CodingKey {
        case vmid, reason, published
        case hostID = "host_id"
        case freeMemoryMB = "free_memory_mb"
        case freeCPU = "free_cpu"
    }
}
