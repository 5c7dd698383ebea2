import Foundation
import Testing

@testable import FelhomCore

/// Golden fixtures pin the wire names of the shared contracts; hub and agent both rely on them.
@Suite struct ContractTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/contracts")

    @Test func hostReportRoundTripsTheGoldenFixtureByteForByte() throws {
        let golden = try Data(contentsOf: Self.dir.appendingPathComponent("host-report.golden.json"))
        let r = try HostReport.decode(golden)
        #expect(r.guests.count == 2)
        #expect(r.guests[0].spec?.mountPoints[1].backup == false)
        #expect(r.guests[1].spec == nil)
        #expect(r.cloudflared == .unknown)
        #expect(r.backups.first?.consistency == "app" && r.backups.first?.lastFailureReason == "storage_unreachable")
        #expect(r.restoreTests.first?.passed == true && r.restoreTests.first?.restoreSeconds == 41.2)
        #expect(r.encoded() == golden)
    }

    /// The typed protection records refuse a vmid out of range and negative times, naming the path.
    @Test func protectionRecordsAreChecked() throws {
        let golden = try String(contentsOf: Self.dir.appendingPathComponent("host-report.golden.json"), encoding: .utf8)
        let badVmid = golden.replacingOccurrences(of: #""verification":"ok","vmid":100"#, with: #""verification":"ok","vmid":5"#)
        #expect((#expect(throws: ContractError.self) { try HostReport.decode(Data(badVmid.utf8)) })?.path == "$.backups[0].vmid")
        let negative = golden.replacingOccurrences(of: #""restore_seconds":41.2"#, with: #""restore_seconds":-1"#)
        #expect((#expect(throws: ContractError.self) { try HostReport.decode(Data(negative.utf8)) })?.path == "$.restore_tests[0].restore_seconds")
    }

    @Test func emptyCollectionsAreEncodedAsEmptyArrays() throws {
        let r = HostReport(
            reportedAt: Date(timeIntervalSince1970: 0), agentVersion: "x",
            host: .init(cpu: 0, memoryTotal: 0, memoryUsed: 0, diskTotal: 0, diskUsed: 0, uptime: 0, load: [], kernel: "", pveVersion: ""),
            guests: [], cloudflared: .unknown)
        let text = String(decoding: r.encoded(), as: UTF8.self)
        for key in ["guests", "storage_targets", "backups", "restore_tests", "pbs_snapshots", "audit_tail", "journal_in_flight"] {
            #expect(text.contains("\"\(key)\":[]"), "\(key)")
        }
        #expect(!text.contains("null"))
    }

    @Test func guestReportRoundTripsTheGoldenFixture() throws {
        let golden = try Data(contentsOf: Self.dir.appendingPathComponent("guest-report.golden.json"))
        let r = try GuestReport.decode(golden)
        #expect(r.stacks.map(\.name) == ["immich", "traefik"])
        #expect(r.stacks[1].protected)
        #expect(r.encoded() == golden)
        let dup = String(decoding: golden, as: UTF8.self).replacingOccurrences(of: #""name":"traefik""#, with: #""name":"immich""#)
        let e = #expect(throws: ContractError.self) { try GuestReport.decode(Data(dup.utf8)) }
        #expect(e?.path == "$.stacks[1].name")
    }

    /// Found by fuzz-guest-report in CI: a time with a fraction decoded to a value that its own
    /// encoding (whole seconds) could not give back, so a stored report changed on a re-read.
    /// Contract times are whole seconds: the fraction is dropped on read, offsets are applied.
    @Test(arguments: [
        ("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00.999999999Z", "2026-01-01T00:00:00Z"),
        ("2025-12-31T23:30:00.25-00:30", "2026-01-01T00:00:00Z"),
    ])
    func contractTimesAreWholeSecondsAndRoundTrip(text: String, expected: String) throws {
        let json = #"{"reported_at":"\#(text)","controller_version":"1","stacks":[],"telemetry":[],"log_issues":[],"storage_paths":[]}"#
        let report = try GuestReport.decode(Data(json.utf8))
        #expect(RFC3339.format(report.reportedAt) == expected)
        #expect(try GuestReport.decode(report.encoded()) == report)
        let host = try String(contentsOf: Self.dir.appendingPathComponent("host-report.golden.json"), encoding: .utf8)
        let fractional = try #require(host.range(of: #""reported_at":"[^"]*""#, options: .regularExpression))
        let hostReport = try HostReport.decode(Data(host.replacingCharacters(in: fractional, with: #""reported_at":"\#(text)""#).utf8))
        #expect(RFC3339.format(hostReport.reportedAt) == expected)
        #expect(try HostReport.decode(hostReport.encoded()) == hostReport)
    }

    /// Found by `fuzz-guest-report` (seed `regression-integral-double`): a number written with a
    /// fraction that a Double holds as a whole number (`88888888880016626.9460`) was `.double`, was
    /// written back without the fraction and read again as `.int`, so a stored report changed on a
    /// re-read. Free-form members (telemetry, log issues) must round-trip through their encoding.
    @Test(arguments: ["88888888880016626.9460", "88888888888800166260", "2.0", "-0.0", "1e3", "9223372036854775807.5", "1.5"])
    func freeFormNumbersRoundTrip(number: String) throws {
        let json =
            #"{"reported_at":"2027-11-23T12:00:00Z","controller_version":"1","stacks":[],"telemetry":[\#(number)],"log_issues":[{"tr":[\#(number)]}],"storage_paths":[]}"#
        let report = try GuestReport.decode(Data(json.utf8))
        let again = try GuestReport.decode(report.encoded())
        #expect(again == report, "\(String(decoding: report.encoded(), as: UTF8.self))")
        #expect(again.encoded() == report.encoded())
    }

    @Test func controlEnvelopeGolden() throws {
        let golden = try Data(contentsOf: Self.dir.appendingPathComponent("control-envelope.golden.json"))
        let e = try JSONDecoder().decode(ControlEnvelope.self, from: golden)
        #expect(e == ControlEnvelope(pollIntervalSeconds: 300, blocked: false, desiredGeneration: 7, hasSignedOps: true))
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        #expect(try enc.encode(e) == golden)
    }

    /// Issue 11: mixed versions. A report from a newer agent — an unknown status value, unknown
    /// fields — decodes (unknown values as `unknown`, unknown fields ignored) instead of being refused.
    @Test func aNewerAgentsReportDecodes() throws {
        let newer = try Data(contentsOf: Self.dir.appendingPathComponent("host-report.newer-agent.json"))
        let r = try HostReport.decode(newer)
        #expect(r.guests[0].status == .unknown)
        #expect(r.cloudflared == .unknown)
        #expect(r.agentVersion == "9.0.0")
        let guest = try GuestReport.decode(
            Data(
                #"{"reported_at":"2026-11-23T12:00:00Z","controller_version":"9.0.0","stacks":[{"name":"immich","state":"hibernating","protected":false,"cpu":3}],"telemetry":[],"log_issues":[],"storage_paths":[],"future":true}"#
                    .utf8))
        #expect(guest.stacks[0].state == .unknown)
    }

    @Test func badReportsNameThePath() throws {
        let golden = try String(contentsOf: Self.dir.appendingPathComponent("host-report.golden.json"), encoding: .utf8)
        let cases = [
            (golden.replacingOccurrences(of: #""memory":2048"#, with: #""memory":0"#), "$.guests[0].spec.memory"),
            (
                golden.replacingOccurrences(of: #""agent_version":"0.1.0","audit_tail":"#, with: #""agent_version":"0.1.0","audit_trail":"#),
                "$.audit_tail"
            ),
            (golden.replacingOccurrences(of: #""outcome":"done""#, with: #""outcome":"maybe""#), "$.audit_tail[0].outcome"),
            (golden.replacingOccurrences(of: #""size":1073741824"#, with: #""size":-1"#), "$.pbs_snapshots[0].size"),
            (golden.replacingOccurrences(of: #""state":"attached""#, with: #""state":"lost""#), "$.storage_targets[0].state"),
            (golden.replacingOccurrences(of: #""size":1073741824"#, with: #""size":"big""#), "$.pbs_snapshots[0].size"),
            (golden.replacingOccurrences(of: #""reported_at":"2026-11-23T12:00:00Z""#, with: #""reported_at":"yesterday""#), "$.reported_at"),
        ]
        for (text, path) in cases {
            let e = #expect(throws: ContractError.self) { try HostReport.decode(Data(text.utf8)) }
            #expect(e?.path == path, "\(String(describing: e))")
        }
    }
}
