import Foundation
import Testing

@testable import FelhomCore

@Suite struct ConfigLoaderTests {
    struct Sample: Decodable {
        struct Inner: Decodable {
            var host: String
            var port: Int?
            var secret: Secret?
            var insecure: Bool?
        }
        var pve: Inner
    }

    let loader = ConfigLoader(
        environmentPrefix: "FELHOM_TEST",
        keys: [.init("pve.host"), .init("pve.port", .integer), .init("pve.secret"), .init("pve.insecure", .boolean)])

    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "felhom-config-\(UUID().uuidString).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func environmentOverridesTheFile() throws {
        let file = try write(#"{"pve": {"host": "a", "port": 1}}"#)
        let s = try loader.load(
            Sample.self, file: file, environment: ["FELHOM_TEST_PVE_PORT": "8006", "FELHOM_TEST_PVE_SECRET": "s3cr3t"])
        #expect(s.pve.host == "a")
        #expect(s.pve.port == 8006)
        #expect(s.pve.secret?.reveal() == "s3cr3t")
    }

    @Test func environmentAloneIsEnough() throws {
        let s = try loader.load(Sample.self, file: nil, environment: ["FELHOM_TEST_PVE_HOST": "h", "FELHOM_TEST_PVE_INSECURE": "true"])
        #expect(s.pve.host == "h")
        #expect(s.pve.insecure == true)
    }

    @Test func badEnvironmentValueNamesTheVariable() throws {
        let e = #expect(throws: ConfigError.self) {
            try loader.load(Sample.self, file: nil, environment: ["FELHOM_TEST_PVE_HOST": "h", "FELHOM_TEST_PVE_PORT": "eighty"])
        }
        #expect(e?.message.contains("FELHOM_TEST_PVE_PORT") == true)
        #expect(e?.message.contains("eighty") == false)
    }

    @Test func missingKeyNamesThePath() throws {
        let file = try write(#"{"pve": {}}"#)
        let e = #expect(throws: ConfigError.self) { try loader.load(Sample.self, file: file, environment: [:]) }
        #expect(e?.message.contains("$.pve.host") == true)
    }

    @Test func unreadableAndMalformedFilesAreClearErrors() throws {
        let e1 = #expect(throws: ConfigError.self) { try loader.load(Sample.self, file: "/nonexistent/x.json", environment: [:]) }
        #expect(e1?.code == .unreadable)
        let file = try write("{not json")
        let e2 = #expect(throws: ConfigError.self) { try loader.load(Sample.self, file: file, environment: [:]) }
        #expect(e2?.code == .invalid)
        #expect(e2?.message.contains(file) == true)
    }

    @Test func secretsNeverPrint() {
        let s = Secret("hunter2")
        #expect("\(s)" == "<redacted>")
        #expect(String(reflecting: s) == "<redacted>")
        struct Holder { var token: Secret }
        #expect(!"\(Holder(token: s))".contains("hunter2"))
    }

    @Test func manualClockMovesOnlyWhenTold() {
        let c = ManualClock()
        let t0 = c.now()
        #expect(c.now() == t0)
        c.advance(by: 5)
        #expect(c.now().timeIntervalSince(t0) == 5)
    }
}
