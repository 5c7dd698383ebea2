import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HummingbirdTesting
import Testing

@Suite struct DesiredStateTests {
    func hostAndKey(_ client: some TestClientProtocol) async throws -> (String, String) {
        let c = try await client.call(
            .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"A","email":"a@example.hu","domain":"a.example.hu"}"#)
        let cid = c.json?["id"]?.stringValue ?? ""
        let h = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(cid)","name":"nappali"}"#)
        return (h.json?["id"]?.stringValue ?? "", h.json?["api_key"]?.stringValue ?? "")
    }

    @Test(arguments: TestStores.kinds)
    func editPublishLongPollAndDrift(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let (host, hostKey) = try await hostAndKey(client)
            // Nothing published yet.
            let empty = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: hostKey)
            #expect(empty.json?["generation"] == 0)
            #expect(empty.json?["spec"] == .null || empty.json?["spec"] == nil)
            #expect(
                try await client.call(.post, "/api/v1/hosts/\(host)/desired/publish", key: operatorKey).status == .conflict,
                "no draft: a state conflict")
            // A draft is not visible to the host until published.
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: sampleDesired).status == .ok)
            let draftOnly = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: hostKey)
            #expect(draftOnly.json?["generation"] == 0 && draftOnly.json?["draft"] == nil)
            #expect(try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: operatorKey).json?["unpublished_changes"] == true)
            // A long-poll waiting on generation 0 returns once the publish lands.
            async let polled = client.call(.get, "/api/v1/control?after_generation=0&wait=20", key: hostKey)
            try await Task.sleep(for: .milliseconds(300))
            let pub = try await client.call(.post, "/api/v1/hosts/\(host)/desired/publish", key: operatorKey)
            #expect(pub.json?["generation"] == 1)
            #expect(try await polled.json?["desired_generation"] == 1)
            let seen = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: hostKey)
            #expect(seen.json?["generation"] == 1)
            #expect(seen.json?["spec"]?["guests"]?.arrayValue?.count == 2)
            #expect(try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: operatorKey).json?["unpublished_changes"] == false)
            // Drift against the sample report: web in sync, db missing.
            #expect(try await client.call(.post, "/api/v1/host-report", key: hostKey, body: sampleReport()).status == .ok)
            let drift = try await client.call(.get, "/api/v1/hosts/\(host)/drift", key: operatorKey)
            let states = (drift.json?["guests"]?.arrayValue ?? []).map { "\($0["vmid"]?.lenientInt ?? 0):\($0["state"]?.stringValue ?? "")" }
            #expect(states == ["100:in_sync", "101:missing"], "\(String(decoding: drift.body, as: UTF8.self))")
            #expect(drift.json?["in_sync"] == false)
            let events = try await client.call(.get, "/api/v1/events?type=desired_published", key: operatorKey)
            #expect(events.json?["events"]?.arrayValue?.count == 1)
        }
        await h.hub.store.close()
    }

    @Test(arguments: [
        (#"{"guests":[{"vmid":100,"name":"web","cpu":1,"memory_mb":0,"disk_gb":8}]}"#, "$.guests[0].memory_mb", "memory must be positive"),
        (#"{"guests":[{"vmid":100,"name":"web","cpu":1,"memory_mb":512}]}"#, "$.guests[0].disk_gb", ""),
        (#"{"guests":[{"vmid":99,"name":"web","cpu":1,"memory_mb":512,"disk_gb":8}]}"#, "$.guests[0].vmid", ""),
        (#"{"guests":[{"vmid":100,"name":"Web_1","cpu":1,"memory_mb":512,"disk_gb":8}]}"#, "$.guests[0].name", ""),
        (#"{"guests":[{"vmid":100,"name":"a","cpu":-1,"memory_mb":512,"disk_gb":8}]}"#, "$.guests[0].cpu", ""),
        (
            #"{"guests":[{"vmid":100,"name":"a","cpu":1,"memory_mb":512,"disk_gb":8},{"vmid":100,"name":"b","cpu":1,"memory_mb":512,"disk_gb":8}]}"#,
            "$.guests[1].vmid", "duplicate"
        ),
        (#"{"guests":[{"vmid":100,"name":"a","cpu":1,"memory_mb":512,"disk_gb":8,"run_state":"paused"}]}"#, "$.guests[0].run_state", ""),
        (
            #"{"guests":[{"vmid":100,"name":"a","cpu":1,"memory_mb":512,"disk_gb":8,"mount_points":[{"key":"mp0","path":"/m","size_gb":5,"backup":true,"bulk":true}]}]}"#,
            "$.guests[0].mount_points[0].backup", "bulk"
        ),
        (#"{"storage_policy":{"backup_hour":24}}"#, "$.storage_policy.backup_hour", ""),
        (
            #"{"guests":[{"vmid":100,"name":"a","cpu":1,"memory_mb":512,"disk_gb":8,"mount_points":[{"key":"mp0","path":"/m","size_gb":800,"backup":true,"bulk":false}]}]}"#,
            "$.guests[0].mount_points[0].backup", "bulk"
        ),
        (#"{"guests":[{"vmid":100,"name":"a","cpu":1,"memory_mb":512,"disk_gb":600}]}"#, "$.guests[0].disk_gb", "bulk"),
        (#"{"versions":{"agent":"latest"}}"#, "$.versions.agent", ""),
    ])
    func badSpecsNameTheFieldAndKeepTheOldDraft(_ body: String, _ path: String, _ words: String) async throws {
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let (host, _) = try await hostAndKey(client)
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: sampleDesired).status == .ok)
            let r = try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: body)
            #expect(r.status == .badRequest)
            #expect(r.json?["error"]?["path"]?.stringValue == path, "\(String(decoding: r.body, as: UTF8.self))")
            if !words.isEmpty { #expect(r.json?["error"]?["message"]?.stringValue?.contains(words) == true) }
            let kept = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: operatorKey)
            #expect(kept.json?["draft"]?["guests"]?.arrayValue?.count == 2)
        }
        await h.hub.store.close()
    }

    /// `POST /hosts/{id}/requests`: operator only, the guest must be published and backups on; the
    /// request becomes a new generation (waking the host's poll), stays through a later publish of
    /// the draft, and is dropped with its guest.
    @Test(arguments: TestStores.kinds)
    func operatorRequestsArePublishedAndCarriedOver(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let (host, hostKey) = try await hostAndKey(client)
            let path = "/api/v1/hosts/\(host)/requests"
            let ask = #"{"kind":"backup","vmid":100}"#
            #expect(try await client.call(.post, path, key: operatorKey, body: ask).json?["error"]?["code"] == "no_published_state")
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: sampleDesired).status == .ok)
            _ = try await client.call(.post, "/api/v1/hosts/\(host)/desired/publish", key: operatorKey)
            #expect(try await client.call(.post, path, key: operatorKey, body: ask).json?["error"]?["code"] == "no_backup_storage")
            let withStorage = sampleDesired.replacingOccurrences(
                of: #""versions""#, with: #""storage_policy":{"backup_storage":"pbs-felhom"},"versions""#)
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: withStorage).status == .ok)
            _ = try await client.call(.post, "/api/v1/hosts/\(host)/desired/publish", key: operatorKey)

            #expect(try await client.call(.post, path, key: hostKey, body: ask).status == .forbidden, "a host cannot ask itself")
            let unknown = try await client.call(.post, path, key: operatorKey, body: #"{"kind":"backup","vmid":555}"#)
            #expect(unknown.status == .conflict && unknown.json?["error"]?["code"] == "guest_not_published")
            // A draft's own requests are dropped (hub-managed), not refused.
            let drafted = withStorage.replacingOccurrences(
                of: #""versions""#, with: #""requests":[{"id":"x","kind":"backup","vmid":999}],"versions""#)
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: drafted).status == .ok)
            #expect(try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: operatorKey).json?["draft"]?["requests"] == nil)
            // …but a malformed list is still refused, naming the path.
            for (list, where_) in [
                ("[null]", "$.requests[0]"), (#"[{"id":"x","kind":"wipe","vmid":100}]"#, "$.requests[0].kind"),
                (#"[{"id":"X!","kind":"backup","vmid":100}]"#, "$.requests[0].id"), (#""all""#, "$.requests"),
                (#"[{"id":"x","kind":"backup","vmid":100,"force":1}]"#, "$.requests[0].force"),
            ] {
                let bad = withStorage.replacingOccurrences(of: #""versions""#, with: #""requests":\#(list),"versions""#)
                let r = try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: bad)
                #expect(
                    r.status == .badRequest && r.json?["error"]?["path"]?.stringValue == where_, "\(list): \(String(decoding: r.body, as: UTF8.self))"
                )
            }
            for (body, where_) in [
                (#"{"kind":"wipe","vmid":100}"#, "$.kind"),
                (#"{"kind":"backup","vmid":100,"force":true}"#, "$.force"), (#"{"vmid":100}"#, "$.kind"),
            ] {
                let r = try await client.call(.post, path, key: operatorKey, body: body)
                #expect(
                    r.status == .badRequest && r.json?["error"]?["path"]?.stringValue == where_, "\(body): \(String(decoding: r.body, as: UTF8.self))"
                )
            }
            async let polled = client.call(.get, "/api/v1/control?after_generation=2&wait=20", key: hostKey)
            try await Task.sleep(for: .milliseconds(300))
            let r = try await client.call(.post, path, key: operatorKey, body: #"{"kind":"restore_test","vmid":101}"#)
            #expect(r.status == .accepted && r.json?["kind"] == "restore_test" && r.json?["vmid"] == 101)
            let id = try #require(r.json?["id"]?.stringValue)
            #expect(try await polled.json?["desired_generation"] == 3, "the host's long-poll wakes")
            let seen = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: hostKey)
            #expect(seen.json?["spec"]?["requests"]?.arrayValue?.first?["id"]?.stringValue == id)
            // A later publish of the draft keeps it; removing the guest drops it.
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: withStorage).status == .ok)
            _ = try await client.call(.post, "/api/v1/hosts/\(host)/desired/publish", key: operatorKey)
            let kept = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: hostKey)
            #expect(kept.json?["spec"]?["requests"]?.arrayValue?.count == 1)
            let onlyWeb =
                #"{"guests":[{"vmid":100,"name":"web","cpu":2,"memory_mb":2048,"disk_gb":8}],"storage_policy":{"backup_storage":"pbs-felhom"}}"#
            #expect(try await client.call(.put, "/api/v1/hosts/\(host)/desired", key: operatorKey, body: onlyWeb).status == .ok)
            _ = try await client.call(.post, "/api/v1/hosts/\(host)/desired/publish", key: operatorKey)
            let dropped = try await client.call(.get, "/api/v1/hosts/\(host)/desired", key: hostKey)
            #expect(dropped.json?["spec"]?["requests"] == nil, "its guest is gone")
            #expect(try await client.call(.get, "/api/v1/events?type=operator_request", key: operatorKey).json?["events"]?.arrayValue?.count == 1)
        }
        await h.hub.store.close()
    }
}
