import FelhomAPI
import FelhomCore
import Testing

@testable import FelhomHub

/// The arithmetic of capacity, placement and quotas (ADR 0012), table by table.
@Suite struct PlacementTests {
    func guest(_ vmid: Int, cpu: Double, memory: Int, ipv4: Bool = false) -> DesiredState.Guest {
        DesiredState.Guest(vmid: vmid, name: "g\(vmid)", cpu: cpu, memoryMB: memory, diskGB: 4, runState: .running, publicIPv4: ipv4)
    }

    @Test(arguments: [
        // cores, memory GiB, overcommit, reserved, buffer → allocatable cpu, memory MiB
        (8, 32, 4.0, 1024, 512, 32.0, 31_232),
        (2, 4, 1.5, 1024, 512, 3.0, 2_560),
        (4, 1, 4.0, 1024, 512, 16.0, 0),  // less memory than the reserve: nothing, never negative
    ])
    func allocatable(cores: Int, gib: Int64, overcommit: Double, reserved: Int, buffer: Int, cpu: Double, memory: Int) {
        var policy = Placement.Policy()
        policy.cpuOvercommit = overcommit
        policy.reservedHostMemoryMB = reserved
        policy.memorySafetyBufferMB = buffer
        let c = Placement.allocatable(cores: cores, memoryTotalBytes: gib << 30, policy: policy)
        #expect(c.cpu == cpu && c.memoryMB == memory)
        #expect(Placement.allocatable(cores: nil, memoryTotalBytes: gib << 30, policy: policy).cpu == nil, "no core count: CPU unknown")
    }

    @Test func usageSumsFractionsExactlyAndCountsEverything() {
        var spec = DesiredState(guests: [guest(100, cpu: 0.1, memory: 512), guest(101, cpu: 0.2, memory: 256, ipv4: true)])
        spec.routes = [.init(id: "web", guestVMID: 100, listenPort: 443, targetPort: 443)]
        let u = Placement.usage(spec)
        #expect(u.cpu == 0.3, "0.1 + 0.2 is 0.3 here")
        #expect(u == ResourceUsage(cpu: 0.3, memoryMB: 768, guests: 2, routes: 1, publicIPv4: 1))
        #expect(Placement.usage(nil) == ResourceUsage())
        let bigger = Placement.hostUsage(draft: spec, published: DesiredState(guests: [guest(100, cpu: 4, memory: 100)]))
        #expect(bigger == ResourceUsage(cpu: 4, memoryMB: 768, guests: 2, routes: 1, publicIPv4: 1), "per resource, the larger")
    }

    @Test(arguments: [
        // memory used, cpu used → refused resource (nil: fits); capacity 2048 MiB, 2 vCPU
        (2048, 2.0, String?.none),  // exactly full fits
        (2049, 0.5, "memory"),
        (1024, 2.01, "cpu"),
        (4096, 8.0, "memory"),  // memory is named first
    ])
    func capacityBoundaries(memory: Int, cpu: Double, refused: String?) {
        let r = Placement.checkCapacity(
            hostID: "h", usage: ResourceUsage(cpu: cpu, memoryMB: memory), capacity: .init(cpu: 2, memoryMB: 2048))
        #expect(r?.resource == refused)
        if let r { #expect(r.description.contains("host h") && r.description.contains(refused == "memory" ? "2048 MiB" : "2 vCPU")) }
    }

    @Test func cpuIsNotCheckedWithoutACoreCount() {
        #expect(Placement.checkCapacity(hostID: "h", usage: ResourceUsage(cpu: 999, memoryMB: 10), capacity: .init(cpu: nil, memoryMB: 100)) == nil)
    }

    @Test func placementPicksTheMostFreeMemoryThatFitsBoth() {
        let candidates = [
            Placement.Candidate(hostID: "a", capacity: .init(cpu: 4, memoryMB: 8192), usage: ResourceUsage(cpu: 3.5, memoryMB: 1024)),  // cpu binds
            Placement.Candidate(hostID: "b", capacity: .init(cpu: 16, memoryMB: 4096), usage: ResourceUsage(cpu: 1, memoryMB: 1024)),
            Placement.Candidate(hostID: "c", capacity: .init(cpu: 16, memoryMB: 6144), usage: ResourceUsage(cpu: 1, memoryMB: 1024)),
            Placement.Candidate(hostID: "d", capacity: nil, usage: ResourceUsage()),
        ]
        guard case .success(let choice) = Placement.place(cpu: 1, memoryMB: 2048, candidates: candidates) else {
            Issue.record("expected a host")
            return
        }
        #expect(choice.hostID == "c" && choice.freeMemoryMB == 5120)
        #expect(choice.reason.contains("5120 MiB free") && choice.reason.contains("1 other host would fit too"), "\(choice.reason)")

        guard case .failure(let failure) = Placement.place(cpu: 1, memoryMB: 6000, candidates: candidates) else {
            Issue.record("expected no host")
            return
        }
        #expect(failure.misses.map(\.hostID) == ["a", "b", "c", "d"])
        #expect(failure.misses.map(\.resource) == ["cpu", "memory", "memory", "capacity_unknown"], "a: memory fits, CPU binds")
        guard case .failure(let cpuBound) = Placement.place(cpu: 0.75, memoryMB: 100, candidates: Array(candidates.prefix(1))) else {
            Issue.record("expected no host")
            return
        }
        #expect(cpuBound.misses == [.init(hostID: "a", resource: "cpu", free: 0.5, requested: 0.75)])
    }

    @Test func equalFreeMemoryPicksTheLowerHostID() {
        let same = ["z", "m"].map {
            Placement.Candidate(hostID: $0, capacity: .init(cpu: nil, memoryMB: 1000), usage: ResourceUsage())
        }
        guard case .success(let choice) = Placement.place(cpu: 1, memoryMB: 10, candidates: same) else {
            Issue.record("expected a host")
            return
        }
        #expect(choice.hostID == "m")
    }

    @Test(arguments: [
        // limit, before, after → refused (usage, requested)
        (1000, 800, 1000, false, 0, 0),  // exactly at the limit
        (1000, 800, 1001, true, 800, 201),
        (500, 800, 700, false, 0, 0),  // over a lowered quota but shrinking: allowed
        (500, 800, 800, false, 0, 0),  // over a lowered quota, unchanged: allowed
        (500, 800, 900, true, 800, 100),  // over and growing: refused
    ])
    func memoryQuota(limit: Int, before: Int, after: Int, refused: Bool, usage: Int, requested: Int) {
        let r = Placement.checkQuotas(
            CustomerQuotas(maxMemoryMB: limit), before: ResourceUsage(memoryMB: before), after: ResourceUsage(memoryMB: after))
        #expect((r != nil) == refused)
        if let r { #expect(r == Placement.QuotaRefusal(quota: "max_memory_mb", limit: limit, usage: usage, requested: requested)) }
    }

    @Test func eachQuotaIsNamedByItsField() {
        let q = CustomerQuotas(maxMemoryMB: 100, maxGuests: 1, maxRoutes: 0, maxPublicIPv4: 0)
        let zero = ResourceUsage()
        #expect(Placement.checkQuotas(q, before: zero, after: ResourceUsage(guests: 2))?.quota == "max_guests")
        #expect(Placement.checkQuotas(q, before: zero, after: ResourceUsage(routes: 1))?.quota == "max_routes")
        #expect(Placement.checkQuotas(q, before: zero, after: ResourceUsage(publicIPv4: 1))?.quota == "max_public_ipv4")
        #expect(Placement.checkQuotas(CustomerQuotas(), before: zero, after: ResourceUsage(memoryMB: 1 << 30)) == nil, "no limits")
        #expect(Placement.exceeded(q, usage: ResourceUsage(memoryMB: 101, guests: 1)) == ["max_memory_mb"])
    }
}
