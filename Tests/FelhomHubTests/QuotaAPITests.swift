import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HummingbirdTesting
import Testing

/// Capacity, quotas and placement through the API, on SQLite and PostgreSQL: every refusal with
/// its code and fields, and what is stored afterwards.
@Suite struct QuotaAPITests {
    struct World {
        var customer = "", hostA = "", hostAKey = "", hostB = "", hostBKey = ""
    }

    /// A customer with two hosts; each reports `cores` and `memoryGiB` (default 8 cores, 8 GiB:
    /// allocatable 32 vCPU, 8192 − 1536 = 6656 MiB).
    func world(_ client: some TestClientProtocol, report: Bool = true, memoryGiB: [Int] = [8, 8]) async throws -> World {
        var w = World()
        w.customer =
            try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"Kiss Anna","email":"a@example.hu","domain":"kiss.example.hu"}"#
            ).json?["id"]?.stringValue ?? ""
        for (i, name) in ["nappali", "pince"].enumerated() {
            let h = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customer)","name":"\#(name)"}"#)
            let (id, key) = (h.json?["id"]?.stringValue ?? "", h.json?["api_key"]?.stringValue ?? "")
            if i == 0 { (w.hostA, w.hostAKey) = (id, key) } else { (w.hostB, w.hostBKey) = (id, key) }
            if report {
                let body = sampleReport(guests: "[]").replacingOccurrences(
                    of: #""memory_total":34359738368"#, with: #""memory_total":\#(Int64(memoryGiB[i]) << 30),"cores":8"#)
                let r = try await client.call(.post, "/api/v1/host-report", key: key, body: body)
                #expect(r.status == .ok, "\(String(decoding: r.body, as: UTF8.self))")
            }
        }
        return w
    }

    static func guest(_ vmid: Int, _ name: String, memory: Int, cpu: Double = 1, ipv4: Bool = false) -> String {
        #"{"vmid":\#(vmid),"name":"\#(name)","cpu":\#(cpu),"memory_mb":\#(memory),"disk_gb":4\#(ipv4 ? #","public_ipv4":true"# : "")}"#
    }
    static func desired(_ guests: [String], routes: String = "[]") -> String {
        #"{"guests":[\#(guests.joined(separator: ","))],"routes":\#(routes)}"#
    }

    @Test(arguments: TestStores.kinds)
    func capacityIsCheckedOnSaveAndNamesHostResourceAndFigures(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let w = try await world(client)
                let fits = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey,
                    body: Self.desired([Self.guest(100, "a", memory: 4096), Self.guest(101, "b", memory: 2560)]))
                #expect(fits.status == .ok && fits.json?["warnings"] == nil, "6656 MiB exactly: \(String(decoding: fits.body, as: UTF8.self))")
                let over = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey,
                    body: Self.desired([Self.guest(100, "a", memory: 4096), Self.guest(101, "b", memory: 2561)]))
                #expect(over.status == .conflict)
                let e = over.json?["error"]
                #expect(e?["code"] == "capacity_exceeded" && e?["resource"] == "memory" && e?["host_id"]?.stringValue == w.hostA)
                #expect(e?["requested"]?.lenientDouble == 6657 && e?["allocatable"]?.lenientDouble == 6656, "\(String(describing: e))")
                let cpu = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "a", memory: 512, cpu: 32.5)]))
                #expect(cpu.json?["error"]?["code"] == "capacity_exceeded" && cpu.json?["error"]?["resource"] == "cpu")
                // The refused saves changed nothing.
                let view = try await client.call(.get, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey)
                #expect(view.json?["draft"]?["guests"]?.arrayValue?.count == 2)
                let capacity = try await client.call(.get, "/api/v1/hosts/\(w.hostA)/capacity", key: operatorKey)
                #expect(capacity.json?["allocatable_memory_mb"] == 6656 && capacity.json?["allocatable_cpu"]?.lenientDouble == 32)
                #expect(capacity.json?["usage"]?["memory_mb"] == 6656)
            }
        }
    }

    @Test(arguments: TestStores.kinds)
    func aHostThatNeverReportedIsNotCheckedAndTheAnswerSaysSo(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let w = try await world(client, report: false)
                let r = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "a", memory: 1 << 20)]))
                #expect(r.status == .ok)
                #expect(r.json?["warnings"]?.arrayValue?.first?.stringValue?.contains("never reported") == true)
            }
        }
    }

    @Test(arguments: TestStores.kinds)
    func quotasRefuseWithTheFieldsAndAnEventAndAllowLoweringBelowUsage(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let w = try await world(client)
                let put = try await client.call(
                    .put, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey,
                    body: #"{"max_memory_mb":4096,"max_guests":3,"max_routes":1,"max_public_ipv4":1}"#)
                #expect(put.status == .ok && put.json?["max_memory_mb"] == 4096 && put.json?["exceeded"]?.arrayValue?.isEmpty == true)
                // Host A takes 3072 MiB; host B then may add 1024, not 1025.
                let a = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey,
                    body: Self.desired([Self.guest(100, "a", memory: 3072, ipv4: true)]))
                #expect(a.status == .ok)
                let b = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "b", memory: 1025)]))
                #expect(b.status == .conflict)
                let e = b.json?["error"]
                #expect(e?["code"] == "quota_exceeded" && e?["quota"] == "max_memory_mb", "\(String(decoding: b.body, as: UTF8.self))")
                #expect(e?["limit"] == 4096 && e?["usage"] == 3072 && e?["requested"] == 1025 && e?["message"]?.stringValue != nil)
                let events = try await client.call(.get, "/api/v1/events?type=quota_exceeded", key: operatorKey)
                #expect(events.json?["events"]?.arrayValue?.count == 1)
                #expect(
                    try await client.call(
                        .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "b", memory: 1024)])
                    ).status == .ok)
                // The other quotas, each named by its field.
                let ipv4 = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "b", memory: 512, ipv4: true)]))
                #expect(ipv4.json?["error"]?["quota"] == "max_public_ipv4")
                let routes =
                    #"[{"id":"r1","guest_vmid":100,"listen_port":8080,"target_port":80},{"id":"r2","guest_vmid":100,"listen_port":8081,"target_port":80}]"#
                let r = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey,
                    body: Self.desired([Self.guest(100, "b", memory: 512)], routes: routes))
                #expect(r.json?["error"]?["quota"] == "max_routes", "\(String(decoding: r.body, as: UTF8.self))")
                let guests = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey,
                    body: Self.desired([Self.guest(100, "b", memory: 16), Self.guest(101, "c", memory: 16), Self.guest(102, "d", memory: 16)]))
                #expect(guests.json?["error"]?["quota"] == "max_guests")

                // Lowering below usage: accepted, flagged; nothing changes; shrinking still works, growing does not.
                let lowered = try await client.call(
                    .put, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey, body: #"{"max_memory_mb":1000}"#)
                #expect(lowered.status == .ok && lowered.json?["exceeded"]?.arrayValue == ["max_memory_mb"])
                #expect(lowered.json?["usage"]?["memory_mb"] == 4096 && lowered.json?["max_guests"] == .null)
                #expect(
                    try await client.call(
                        .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "b", memory: 512)])
                    ).status == .ok)
                #expect(
                    try await client.call(
                        .put, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "b", memory: 2048)])
                    ).status == .conflict)
                // Bad bodies name the field.
                let bad = try await client.call(.put, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey, body: #"{"max_guests":-1}"#)
                #expect(bad.status == .badRequest && bad.json?["error"]?["path"] == "$.max_guests")
                let unknown = try await client.call(.put, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey, body: #"{"max_disks":1}"#)
                #expect(unknown.status == .badRequest && unknown.json?["error"]?["path"] == "$.max_disks")
            }
        }
    }

    @Test(arguments: TestStores.kinds)
    func placementPicksTheFreestHostAndSaysWhyOrNamesTheBindingResource(_ kind: HubStore.Kind) async throws {
        try await withHub(kind) { h in
            try await h.app.test(.router) { client in
                let w = try await world(client, memoryGiB: [8, 6])  // A: 6656 MiB, B: 4608 MiB allocatable
                _ = try await client.call(
                    .put, "/api/v1/hosts/\(w.hostA)/desired", key: operatorKey, body: Self.desired([Self.guest(100, "a", memory: 4096)]))
                // A has 2560 free, B 4608: B.
                let placed = try await client.call(
                    .post, "/api/v1/customers/\(w.customer)/guests", key: operatorKey,
                    body: #"{"name":"photos","cpu":1,"memory_mb":2048,"disk_gb":4}"#)
                #expect(placed.status == .created, "\(String(decoding: placed.body, as: UTF8.self))")
                #expect(placed.json?["host_id"]?.stringValue == w.hostB && placed.json?["vmid"] == 100 && placed.json?["free_memory_mb"] == 4608)
                #expect(placed.json?["reason"]?.stringValue?.contains("most free memory") == true)
                let draftB = try await client.call(.get, "/api/v1/hosts/\(w.hostB)/desired", key: operatorKey)
                #expect(draftB.json?["draft"]?["guests"]?.arrayValue?.map { $0["name"]?.stringValue } == ["photos"])
                // Next: A 2560 free, B 2560 free: the lower host id; vmid next free on that host.
                let second = try await client.call(
                    .post, "/api/v1/customers/\(w.customer)/guests", key: operatorKey,
                    body: #"{"name":"notes","cpu":0.5,"memory_mb":2000,"disk_gb":4}"#)
                #expect(second.status == .created)
                let chosen = second.json?["host_id"]?.stringValue
                #expect(chosen == min(w.hostA, w.hostB), "\(String(decoding: second.body, as: UTF8.self))")
                #expect(second.json?["vmid"] == (chosen == w.hostA ? 101 : 101))
                // Nothing fits: 409 naming each host's binding resource.
                let none = try await client.call(
                    .post, "/api/v1/customers/\(w.customer)/guests", key: operatorKey, body: #"{"name":"big","cpu":1,"memory_mb":3000,"disk_gb":4}"#)
                #expect(none.status == .conflict && none.json?["error"]?["code"] == "no_capacity")
                let hosts = none.json?["error"]?["hosts"]?.arrayValue ?? []
                #expect(hosts.count == 2 && hosts.allSatisfy { $0["resource"] == "memory" && $0["requested"]?.lenientDouble == 3000 })
                // A bad guest names the field.
                let bad = try await client.call(
                    .post, "/api/v1/customers/\(w.customer)/guests", key: operatorKey, body: #"{"name":"x","cpu":1,"memory_mb":8,"disk_gb":4}"#)
                #expect(bad.status == .badRequest && bad.json?["error"]?["path"] == "$.memory_mb", "\(String(decoding: bad.body, as: UTF8.self))")
                // Quotas apply to placement too.
                _ = try await client.call(.put, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey, body: #"{"max_guests":3}"#)
                let quota = try await client.call(
                    .post, "/api/v1/customers/\(w.customer)/guests", key: operatorKey, body: #"{"name":"more","cpu":0.25,"memory_mb":64,"disk_gb":4}"#
                )
                #expect(quota.status == .conflict && quota.json?["error"]?["quota"] == "max_guests")
            }
        }
    }

    /// N concurrent saves of two hosts of one customer against one quota: the customer's row is
    /// locked (`SELECT … FOR UPDATE`), so at most what the quota allows lands.
    @Test(.enabled(if: TestStores.kinds.contains(.postgres), "needs PostgreSQL"))
    func concurrentEditsOfTwoHostsCannotTogetherPassAQuota() async throws {
        try await withHub(.postgres) { h in
            try await h.app.test(.router) { client in
                let w = try await world(client)
                _ = try await client.call(.put, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey, body: #"{"max_memory_mb":3000}"#)
                // Each edit asks for 2000 MiB on one of the two hosts: only one host's can land. The
                // edits go straight to the hub, in parallel (each on its own pooled connection).
                let hub = h.hub
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for i in 0..<16 {
                        let host = i % 2 == 0 ? w.hostA : w.hostB
                        group.addTask {
                            do {
                                _ = try await hub.putDesired(
                                    hostID: host, body: Data(Self.desired([Self.guest(100, "g\(i)", memory: 2000)]).utf8), by: .operator)
                                return 200
                            } catch let e as HubError {
                                return Int(e.status.code)
                            }
                        }
                    }
                    var all: [Int] = []
                    for try await s in group { all.append(s) }
                    return all
                }
                let quota = try await client.call(.get, "/api/v1/customers/\(w.customer)/quotas", key: operatorKey)
                #expect(quota.json?["usage"]?["memory_mb"] == 2000, "\(statuses) \(String(decoding: quota.body, as: UTF8.self))")
                #expect(statuses.filter { $0 == 409 }.count >= 1 && statuses.allSatisfy { $0 == 200 || $0 == 409 }, "\(statuses)")
            }
        }
    }
}
