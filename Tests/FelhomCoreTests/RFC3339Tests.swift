import FelhomCore
import Foundation
import Testing

@Suite struct RFC3339Tests {
    @Test(arguments: [
        ("2026-11-30T16:49:09Z", 1_796_057_349.0),
        ("2026-11-30t16:49:09z", 1_796_057_349.0),
        ("2026-11-30 16:49:09Z", 1_796_057_349.0),
        ("2026-11-30T17:49:09+01:00", 1_796_057_349.0),
        ("2026-11-30T15:19:09-01:30", 1_796_057_349.0),
        ("2026-11-30T16:49:09.250Z", 1_796_057_349.25),
        ("2016-12-31T23:59:60Z", 1_483_228_799.0),
    ])
    func parsesRFC3339(_ text: String, _ seconds: Double) {
        #expect(RFC3339.parse(text)?.timeIntervalSince1970 == seconds, "\(text)")
    }

    @Test(arguments: [
        "", "2026-11-30", "2026-11-30T16:49:09", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-30T24:00:00Z",
        "2026-11-30T16:49:09.Z", "2026-11-30T16:49:09+0100", "2026-11-30T16:49:09Z ", "１２３４-11-30T16:49:09Z", "2026-11-30T16:49:09+24:00",
    ])
    func rejectsWhatIsNotRFC3339(_ text: String) {
        #expect(RFC3339.parse(text) == nil, "\(text)")
    }

    @Test func formatsUTCWholeSeconds() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 1_796_057_349.7)) == "2026-11-30T16:49:09Z")
    }
}
