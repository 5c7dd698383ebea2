import Crypto
import FelhomCore
import FelhomTestSupport
import Foundation
import SQLKit
import Testing

@testable import FelhomHub

/// The state digest that decides whether a host report adds a history row.
@Suite struct ReportDigestTests {
    func report(_ edit: (inout HostReport) -> Void = { _ in }) throws -> Data {
        var r = try HostReport.decode(Data(sampleReport().utf8))
        edit(&r)
        return r.encoded()
    }

    @Test func samplesDoNotChangeItAndStateDoes() throws {
        let base = ReportDigest.state(ofEncoded: try report())
        let sampled = try report {
            $0.reportedAt = $0.reportedAt.addingTimeInterval(60)
            $0.host.cpu = 0.99
            $0.host.memoryUsed += 1
            $0.host.diskUsed += 1
            $0.host.uptime += 60
            $0.host.load = [3, 2, 1]
        }
        #expect(ReportDigest.state(ofEncoded: sampled) == base)
        let stopped = try report { $0.guests[0].status = .stopped }
        #expect(ReportDigest.state(ofEncoded: stopped) != base)
        let applied = try report { $0.appliedGeneration = 7 }
        #expect(ReportDigest.state(ofEncoded: applied) != base)
        let kernel = try report { $0.host.kernel = "6.8.12-5-pve" }
        #expect(ReportDigest.state(ofEncoded: kernel) == base, "the host member is a sample as a whole")
    }

    /// Only top-level members are left out: a nested key spelled `host`, or text that looks like
    /// one, is state.
    @Test func onlyTopLevelMembersAreSkipped() throws {
        let text = #"{"a":1,"guests":[{"host":{"cpu":1},"name":"x\"host\":{"}],"host":{"x":[1,{"y":"}]"}]},"reported_at":"2026","z":"\\"}"#
        let bytes = Array(text.utf8)
        let ranges = try #require(ReportDigest.sampledRanges(bytes))
        #expect(ranges.map { String(decoding: bytes[$0], as: UTF8.self) } == [#""host":{"x":[1,{"y":"}]"}]}"#, #""reported_at":"2026""#])
        let nested = text.replacingOccurrences(of: #"{"host":{"cpu":1}"#, with: #"{"host":{"cpu":2}"#)
        #expect(ReportDigest.state(ofEncoded: Data(nested.utf8)) != ReportDigest.state(ofEncoded: Data(text.utf8)))
    }

    /// Bytes the scanner cannot follow are hashed whole (one more history row at worst).
    @Test(arguments: ["", "[1,2]", #"{"host":"#, #"{"a":"unterminated}"#, "{\"a\" 1}"])
    func unreadableBytesAreHashedWhole(_ text: String) {
        #expect(ReportDigest.sampledRanges(Array(text.utf8)) == nil)
        #expect(ReportDigest.state(ofEncoded: Data(text.utf8)) == Data(SHA256.hash(data: Data(text.utf8))).base64EncodedString())
    }
}

/// SQLite's group commit writes a batch of reports with shared statements.
@Suite struct ReportBatchTests {
    @Test func aBatchKeepsEachHostsOrderAndItsLaterReport() async throws {
        let store = try await TestStores.open(.sqlite)
        let hub = Hub(store: store, operatorKey: operatorKey)
        let c = try await hub.createCustomer(
            .init(name: "A", email: "a@example.hu", domain: "a.example.hu", timezone: nil, language: nil), by: .operator)
        let (a, _) = try await hub.createHost(customerID: c, name: "a", by: .operator)
        let (b, _) = try await hub.createHost(customerID: c, name: "b", by: .operator)
        func write(_ host: String, _ body: String) throws -> Hub.ReportWrite {
            let encoded = try HostReport.decode(Data(body.utf8)).encoded()
            return Hub.ReportWrite(
                hostID: host, text: String(decoding: encoded, as: UTF8.self), now: 1000, appliedGeneration: nil,
                stateHash: ReportDigest.state(ofEncoded: encoded), heartbeat: 900)
        }
        let stopped = sampleReport().replacingOccurrences(of: #""status":"running""#, with: #""status":"stopped""#)
        let batch = [
            try write(a, sampleReport()), try write(b, sampleReport()), try write("hst_missing", sampleReport()), try write(a, stopped),
            try write(a, stopped),
        ]
        let out = try await store.transaction { db in try await Hub.writeReports(batch, in: db) }
        #expect(out.map { $0 != nil } == [true, true, false, true, true])
        #expect(out.compactMap { $0?.historyDue } == [true, true, true, false], "the second `stopped` of a is unchanged")
        let (history, latestA) = try await store.withDB { db in
            (
                try await db.select().column("host_id").from("host_reports").all().count,
                try await db.select().column("body").from("host_report_latest").where("host_id", .equal, SQLBind(a)).first()?
                    .decode(column: "body", as: String.self)
            )
        }
        #expect(history == 3)
        #expect(latestA?.contains(#""status":"stopped""#) == true)
        await store.close()
    }
}
