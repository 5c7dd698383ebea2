import FelhomCore
import FelhomHub
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

/// The stores every hub suite runs on: SQLite always, PostgreSQL when `FELHOM_TEST_POSTGRES_URL`
/// is set (scripts/test starts one). Each test gets its own fresh database.
enum TestStores {
    static let postgresURL = ProcessInfo.processInfo.environment["FELHOM_TEST_POSTGRES_URL"]

    static var kinds: [HubStore.Kind] {
        if postgresURL == nil {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                // CI must never silently skip: scripts/test sets the URL.
                return [.sqlite, .postgres]
            }
            print("note: FELHOM_TEST_POSTGRES_URL not set: hub suites run on SQLite only (scripts/test starts PostgreSQL)")
            return [.sqlite]
        }
        return [.sqlite, .postgres]
    }

    static func open(_ kind: HubStore.Kind) async throws -> HubStore {
        switch kind {
        case .sqlite:
            let path = NSTemporaryDirectory() + "felhom-hub-\(UUID().uuidString).sqlite"
            return try await HubStore.open(url: "sqlite:\(path)")
        case .postgres:
            guard let base = postgresURL, var c = URLComponents(string: base) else {
                throw StoreError(code: .invalidURL, message: "FELHOM_TEST_POSTGRES_URL is not set")
            }
            let admin = try await HubStore.open(url: base)
            let name = "felhom_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
            try await admin.withDB { db in try await db.raw("CREATE DATABASE \(unsafeRaw: name)").run() }
            await admin.close()
            c.path = "/" + name
            return try await HubStore.open(url: c.string ?? base)
        }
    }
}

let operatorKey = "test-operator-key-0123456789abcdef"

/// A hub on a fresh store with its router, plus helpers to call it.
struct HubHarness {
    let hub: Hub
    let app: Application<RouterResponder<HubRequestContext>>

    static func make(_ kind: HubStore.Kind, clock: WallClock = SystemWallClock()) async throws -> HubHarness {
        let store = try await TestStores.open(kind)
        let hub = Hub(store: store, operatorKey: operatorKey, clock: clock)
        return HubHarness(hub: hub, app: Application(router: HubAPI.router(hub: hub)))
    }
}

struct Reply {
    var status: HTTPResponse.Status
    var body: Data
    var json: JSONValue? { try? JSONValue.parse(body) }
}

extension TestClientProtocol {
    func call(_ method: HTTPRequest.Method, _ uri: String, key: String?, body: String? = nil) async throws -> Reply {
        var headers = HTTPFields()
        if let key { headers[.authorization] = "Bearer \(key)" }
        headers[.contentType] = "application/json"
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { r in
            Reply(status: r.status, body: Data(r.body.readableBytesView))
        }
    }
}

/// A valid host report (the golden shape).
func sampleReport(guests: String = #"[{"vmid":100,"name":"web","status":"running","spec":{"cores":2,"cpuunits":200,"memory":2048,"disk":8,"description":"apps\n","mount_points":[{"key":"rootfs","volume":"local-lvm:vm-100-disk-0","backup":true,"size":"8G"}]}}]"#) -> String {
    #"{"reported_at":"2026-11-23T12:00:00Z","agent_version":"0.1.0","host":{"cpu":0.12,"memory_total":34359738368,"memory_used":2576980377,"disk_total":107374182400,"disk_used":10737418240,"uptime":86400,"load":[0.05,0.1,0.08],"kernel":"6.8.12-4-pve","pve_version":"9.1.3"},"guests":\#(guests),"cloudflared":"running","storage_targets":[],"backups":[],"restore_tests":[],"pbs_snapshots":[],"audit_tail":[],"journal_in_flight":[]}"#
}

let sampleGuestReport = #"{"reported_at":"2026-11-23T12:00:00Z","controller_version":"0.1.0","stacks":[{"name":"immich","state":"running","protected":false},{"name":"traefik","state":"running","protected":true}],"telemetry":[],"log_issues":[],"storage_paths":[]}"#

/// A valid desired state: the guest of `sampleReport()` (in sync) plus one more.
let sampleDesired = #"{"guests":[{"vmid":100,"name":"web","cpu":2,"memory_mb":2048,"disk_gb":8,"run_state":"running","description":"apps"},{"vmid":101,"name":"db","cpu":0.5,"memory_mb":1024,"disk_gb":4,"mount_points":[{"key":"mp0","path":"/srv/media","size_gb":100,"backup":false,"bulk":true}]}],"versions":{"agent":"0.1.0"}}"#
