import FelhomAPI
import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HummingbirdTesting
import SQLKit
import Testing

/// Volume snapshot records (issue 17): the box reports, operator/customer/box list, the
/// retention job marks deleted; the hub's database holds no key in the clear.
@Suite struct VolumeSnapshotTests {
    static let wrapped = "v1." + Data(repeating: 7, count: 60).base64EncodedString()
    static func json(id: String = "20261201T020000Z-0a1b2c3d", volume: String = "local-lvm:vm-100-disk-1", created: String = "2026-12-01T02:00:00Z")
        -> String
    {
        #"{"volume_id":"\#(volume)","snapshot_id":"\#(id)","created_at":"\#(created)","size":8589934592,"object_size":8590065680,"checksum":"sha256:\#(String(repeating: "ab", count: 32))","encryption_key_id":"snapkey:0123456789abcdef","wrapped_data_key":"\#(wrapped)","object_key":"boxes/h/local-lvm/vm-100-disk-1/\#(id).felsnap","state":"complete"}"#
    }
    static let sampleJSON = json()

    struct World {
        var customer = "", host = "", hostKey = "", otherHostKey = ""
    }

    func world(_ client: some TestClientProtocol) async throws -> World {
        var w = World()
        w.customer =
            try await client.call(
                .post, "/api/v1/customers", key: operatorKey, body: #"{"name":"Kiss Anna","email":"a@example.hu","domain":"kiss.example.hu"}"#
            ).json?["id"]?.stringValue ?? ""
        let h = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customer)","name":"nappali"}"#)
        w.host = h.json?["id"]?.stringValue ?? ""
        w.hostKey = h.json?["api_key"]?.stringValue ?? ""
        let o = try await client.call(.post, "/api/v1/hosts", key: operatorKey, body: #"{"customer_id":"\#(w.customer)","name":"pince"}"#)
        w.otherHostKey = o.json?["api_key"]?.stringValue ?? ""
        return w
    }

    @Test(arguments: TestStores.kinds)
    func recordsAreKeptListedAndMarkedDeleted(_ kind: HubStore.Kind) async throws {
        let h = try await HubHarness.make(kind)
        try await h.app.test(.router) { client in
            let w = try await world(client)
            for (i, day) in ["01", "02", "03"].enumerated() {
                let r = try await client.call(
                    .post, "/api/v1/volume-snapshots", key: w.hostKey,
                    body: Self.json(id: "202612\(day)T020000Z-0000000\(i)", created: "2026-12-\(day)T02:00:00Z"))
                #expect(r.status == .ok, "\(String(decoding: r.body, as: UTF8.self))")
            }
            _ = try await client.call(
                .post, "/api/v1/volume-snapshots", key: w.hostKey, body: Self.json(id: "other-vol-1", volume: "local-lvm:vm-101-disk-1"))
            // A retry of the same record is fine; other values under the same id are not.
            #expect(
                try await client.call(
                    .post, "/api/v1/volume-snapshots", key: w.hostKey,
                    body: Self.json(id: "20261201T020000Z-00000000", created: "2026-12-01T02:00:00Z")
                ).status == .ok)
            let clash = try await client.call(
                .post, "/api/v1/volume-snapshots", key: w.hostKey, body: Self.json(id: "20261201T020000Z-00000000", created: "2026-12-09T02:00:00Z"))
            #expect(clash.status == .conflict && clash.json?["error"]?["code"] == "snapshot_conflict")
            // Another box's records are its own.
            #expect(try await client.call(.post, "/api/v1/volume-snapshots", key: w.otherHostKey, body: Self.sampleJSON).status == .ok)

            let list = try await client.call(.get, "/api/v1/hosts/\(w.host)/volume-snapshots?volume_id=local-lvm:vm-100-disk-1", key: operatorKey)
            let ids = list.json?["snapshots"]?.arrayValue?.compactMap { $0["snapshot_id"]?.stringValue }
            #expect(ids == ["20261203T020000Z-00000002", "20261202T020000Z-00000001", "20261201T020000Z-00000000"], "newest first, one volume")
            let all = try await client.call(.get, "/api/v1/hosts/\(w.host)/volume-snapshots", key: w.hostKey)
            #expect(all.json?["snapshots"]?.arrayValue?.count == 4)
            #expect(all.json?["snapshots"]?.arrayValue?.first?["wrapped_data_key"]?.stringValue == Self.wrapped)

            let marked = try await client.call(
                .post, "/api/v1/hosts/\(w.host)/volume-snapshots/deleted", key: operatorKey,
                body: #"{"snapshot_ids":["20261201T020000Z-00000000","no-such-id"]}"#)
            #expect(marked.json?["marked"] == 1)
            let after = try await client.call(.get, "/api/v1/hosts/\(w.host)/volume-snapshots?volume_id=local-lvm:vm-100-disk-1", key: operatorKey)
            #expect(after.json?["snapshots"]?.arrayValue?.last?["state"] == "deleted")

            // What the database holds: the wrapped key and metadata, never a raw 32-byte key.
            let columns = try await h.hub.store.withDB { db in
                try await db.raw("SELECT * FROM volume_snapshots").all().first.map { row in row.allColumns }
            }
            #expect(Set(columns ?? []).isSuperset(of: ["wrapped_data_key", "encryption_key_id", "checksum", "object_key"]))
            #expect(!(columns ?? []).contains { $0.contains("data_key") && $0 != "wrapped_data_key" })
        }
        await h.hub.store.close()
    }

    @Test func badRecordsAreRefusedNamingTheField() async throws {
        let h = try await HubHarness.make(.sqlite)
        try await h.app.test(.router) { client in
            let w = try await world(client)
            let cases: [(String, String, String)] = [
                ("\"checksum\":\"sha256:", "\"checksum\":\"md5:", "$.checksum"),
                ("\"wrapped_data_key\":\"v1.", "\"wrapped_data_key\":\"raw.", "$.wrapped_data_key"),
                ("\"snapshot_id\":\"2026", "\"snapshot_id\":\"../2026", "$.snapshot_id"),
                ("\"state\":\"complete\"", "\"state\":\"deleted\"", "$.state"),
                ("\"size\":8589934592", "\"size\":-1", "$.size"),
                ("\"encryption_key_id\":\"snapkey:", "\"encryption_key_id\":\"key:", "$.encryption_key_id"),
            ]
            for (from, to, path) in cases {
                let r = try await client.call(
                    .post, "/api/v1/volume-snapshots", key: w.hostKey, body: Self.sampleJSON.replacingOccurrences(of: from, with: to))
                #expect(
                    r.status == .badRequest && r.json?["error"]?["path"]?.stringValue == path, "\(path): \(String(decoding: r.body, as: UTF8.self))")
            }
            let extra = try await client.call(
                .post, "/api/v1/volume-snapshots", key: w.hostKey, body: Self.sampleJSON.replacingOccurrences(of: "{", with: #"{"data_key":"AAAA","#))
            #expect(extra.status == .badRequest && extra.json?["error"]?["path"] == "$.data_key", "a raw key is never taken")
            let extraDeleted = try await client.call(
                .post, "/api/v1/hosts/\(w.host)/volume-snapshots/deleted", key: operatorKey, body: #"{"snapshot_ids":[],"all":true}"#)
            #expect(extraDeleted.status == .badRequest && extraDeleted.json?["error"]?["path"] == "$.all")
            let missing = try await client.call(
                .post, "/api/v1/volume-snapshots", key: w.hostKey, body: #"{"volume_id":"local-lvm:vm-100-disk-1","snapshot_id":"x"}"#)
            #expect(missing.status == .badRequest)
        }
        await h.hub.store.close()
    }

    @Test func retentionKeepsTheNewestPerVolumeAndNeverTheLastOne() {
        func record(_ volume: String, _ day: Int, state: String = "complete") -> VolumeSnapshotRecord {
            VolumeSnapshotRecord(
                volumeID: volume, snapshotID: "\(volume.suffix(1))-\(day)", createdAt: Date(timeIntervalSince1970: TimeInterval(day * 86400)),
                size: 1,
                objectSize: 17, checksum: "sha256:" + String(repeating: "0", count: 64), encryptionKeyID: "snapkey:0123456789abcdef",
                wrappedDataKey: Self.wrapped, objectKey: "k/\(volume)/\(day)", state: state)
        }
        let a = (1...20).map { record("vol-a", $0) }
        let b = (1...3).map { record("vol-b", $0) }
        let gone = [record("vol-a", 0, state: "deleted")]
        let doomed = VolumeSnapshotRetention.plan((a + b + gone).shuffled(), keep: 14)
        #expect(doomed.map(\.snapshotID) == (1...6).map { "a-\($0)" }, "the six oldest of vol-a, oldest first; vol-b untouched")
        #expect(VolumeSnapshotRetention.plan(a, keep: 0).count == 19, "keep is at least 1: the newest stays")
        #expect(VolumeSnapshotRetention.plan([record("vol-c", 5)], keep: 1).isEmpty)
    }
}
