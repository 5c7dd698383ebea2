import FelhomCore
import Foundation
import Testing

@Suite struct SecretsFileTests {
    static func parse(_ text: String) throws(SecretsFileError) -> SecretsFile { try SecretsFile(parsing: Array(text.utf8)) }

    /// Every rule of the format, as (file text, expected entries).
    static let good: [(String, String, [SecretsFile.Entry])] = [
        ("header only", "# TRC_SECRETS_V1\n", []),
        ("header without final newline", "# TRC_SECRETS_V1", []),
        ("one pair", "# TRC_SECRETS_V1\nDB_PASSWORD=hunter2\n", [.init(key: "DB_PASSWORD", value: "hunter2")]),
        ("last line without newline", "# TRC_SECRETS_V1\nA=1", [.init(key: "A", value: "1")]),
        ("whitespace kept", "# TRC_SECRETS_V1\nA=  two spaces both sides  \n", [.init(key: "A", value: "  two spaces both sides  ")]),
        ("tab kept", "# TRC_SECRETS_V1\nA=\tx\t\n", [.init(key: "A", value: "\tx\t")]),
        ("empty value", "# TRC_SECRETS_V1\nA=\n", [.init(key: "A", value: "")]),
        ("everything after the first =", "# TRC_SECRETS_V1\nURL=postgres://u:p@h/db?a=b\n", [.init(key: "URL", value: "postgres://u:p@h/db?a=b")]),
        ("no quoting", "# TRC_SECRETS_V1\nQ=\"quoted\" 'single' $HOME\n", [.init(key: "Q", value: "\"quoted\" 'single' $HOME")]),
        ("comments and empty lines", "# TRC_SECRETS_V1\n# a comment\n\nA=1\n#B=2\n", [.init(key: "A", value: "1")]),
        ("a # inside a value is not a comment", "# TRC_SECRETS_V1\nA=x # y\n", [.init(key: "A", value: "x # y")]),
        ("digits and underscores", "# TRC_SECRETS_V1\n_1A_2=v\n", [.init(key: "_1A_2", value: "v")]),
        ("UTF-8 raw", "# TRC_SECRETS_V1\nNEV=Árvíztűrő tükörfúrógép\n", [.init(key: "NEV", value: "Árvíztűrő tükörfúrógép")]),
        ("base64 multi-line", "# TRC_SECRETS_V1\nK=base64:bGluZSAxCmxpbmUgMg==\n", [.init(key: "K", value: "line 1\nline 2")]),
        ("base64 empty", "# TRC_SECRETS_V1\nK=base64:\n", [.init(key: "K", value: "")]),
        ("base64 NUL and high bytes", "# TRC_SECRETS_V1\nK=base64:AP/+\n", [.init(key: "K", value: [0x00, 0xFF, 0xFE])]),
    ]

    @Test(arguments: 0..<good.count) func parsesEveryRule(_ i: Int) throws {
        let (name, text, want) = Self.good[i]
        #expect(try Self.parse(text).entries == want, "\(name)")
    }

    /// Each bad file, the line it names, and a phrase of the message.
    static let bad: [(String, String, Int, String)] = [
        ("empty file", "", 1, "empty"),
        ("no header", "A=1\n", 1, "first line must be exactly"),
        ("header with trailing space", "# TRC_SECRETS_V1 \nA=1\n", 1, "first line"),
        ("other version", "# TRC_SECRETS_V2\n", 1, "first line"),
        ("byte-order mark", "\u{FEFF}# TRC_SECRETS_V1\n", 1, "byte-order mark"),
        ("Windows line endings", "# TRC_SECRETS_V1\r\nA=1\r\n", 1, "CR"),
        ("no equals sign", "# TRC_SECRETS_V1\nA=1\nJUSTTEXT\n", 3, "no '='"),
        ("lower-case key", "# TRC_SECRETS_V1\ndb_password=x\n", 2, "upper-case"),
        ("key with a space", "# TRC_SECRETS_V1\nA B=x\n", 2, "upper-case"),
        ("key with leading space", "# TRC_SECRETS_V1\n A=x\n", 2, "upper-case"),
        ("empty key", "# TRC_SECRETS_V1\n=x\n", 2, "empty"),
        ("duplicate key", "# TRC_SECRETS_V1\nA=1\nB=2\nA=3\n", 4, "appears twice (first on line 2)"),
        ("bad base64", "# TRC_SECRETS_V1\nK=base64:not base64!\n", 2, "not standard padded base64"),
        ("unpadded base64", "# TRC_SECRETS_V1\nK=base64:YQ\n", 2, "base64"),
        ("indented comment is not a comment", "# TRC_SECRETS_V1\n  # note\n", 2, "no '='"),
    ]

    @Test(arguments: 0..<bad.count) func refusesEveryBreakWithTheLine(_ i: Int) {
        let (name, text, line, phrase) = Self.bad[i]
        #expect(throws: SecretsFileError.self, "\(name)") { try Self.parse(text) }
        do {
            _ = try Self.parse(text)
        } catch {
            #expect(error.line == line, "\(name): \(error)")
            #expect(error.message.contains(phrase), "\(name): \(error)")
            #expect(error.description.hasPrefix("line \(line): "), "\(name): \(error)")
        }
    }

    @Test func nonUTF8RawBytesAreRefusedNamingTheLine() {
        var bytes = Array("# TRC_SECRETS_V1\nA=ok\nB=".utf8)
        bytes += [0xC3, 0x28, 0x0A]
        do {
            _ = try SecretsFile(parsing: bytes)
            Issue.record("parsed invalid UTF-8")
        } catch {
            #expect(error.line == 3 && error.message.contains("UTF-8"), "\(error)")
        }
    }

    @Test func renderEncodesOnlyWhatMustBeEncoded() throws {
        let file = SecretsFile(entries: [
            .init(key: "PLAIN", value: "  as is  "),
            .init(key: "MULTI", value: "a\nb"),
            .init(key: "CR", value: "a\rb"),
            .init(key: "NUL", value: [0x61, 0x00]),
            .init(key: "BIN", value: [0xFF]),
            .init(key: "LOOKS_ENCODED", value: "base64:aGk="),
        ])
        let text = String(decoding: try file.render(), as: UTF8.self)
        #expect(
            text == """
                # TRC_SECRETS_V1
                PLAIN=  as is  
                MULTI=base64:YQpi
                CR=base64:YQ1i
                NUL=base64:YQA=
                BIN=base64:/w==
                LOOKS_ENCODED=base64:YmFzZTY0OmFHaz0=

                """)
        #expect(try SecretsFile(parsing: try file.render()) == file)
    }

    @Test func renderRefusesBadKeysAndDuplicates() {
        #expect(throws: SecretsFileError.self) { try SecretsFile(entries: [.init(key: "lower", value: "x")]).render() }
        #expect(throws: SecretsFileError.self) { try SecretsFile(entries: [.init(key: "A", value: "1"), .init(key: "A", value: "2")]).render() }
    }

    /// render ∘ parse is the identity on arbitrary byte values (seeded, reproducible).
    @Test func renderThenParseIsTheIdentityOnArbitraryBytes() throws {
        var rng = SplitMix64(seed: 0x5EC2_E75F)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_".utf8)
        let interesting: [UInt8] = [0x00, 0x0A, 0x0D, 0x20, 0x09, 0x23, 0x3D, 0x27, 0x22, 0x5C, 0x80, 0xC3, 0xA9, 0xFF, 0xEF, 0xBB, 0xBF]
        for round in 0..<2000 {
            var entries: [SecretsFile.Entry] = []
            var keys = Set<String>()
            for _ in 0..<Int(rng.next() % 6) {
                let key = String(decoding: (0...Int(rng.next() % 12)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }, as: UTF8.self)
                guard keys.insert(key).inserted else { continue }
                let value: [UInt8] = (0..<Int(rng.next() % 40)).map { _ in
                    rng.next() % 3 == 0 ? interesting[Int(rng.next() % UInt64(interesting.count))] : UInt8(truncatingIfNeeded: rng.next())
                }
                entries.append(.init(key: key, value: round % 5 == 0 ? Array("base64:".utf8) + value : value))
            }
            let file = SecretsFile(entries: entries)
            let back = try SecretsFile(parsing: try file.render())
            #expect(back == file, "round \(round)")
        }
    }

    @Test func shellExportQuotesForPOSIXsh() throws {
        let file = SecretsFile(entries: [.init(key: "A", value: "it's  \"x\" $HOME `id`\nsecond line  "), .init(key: "B", value: "")])
        #expect(try file.shellExport() == "A='it'\\''s  \"x\" $HOME `id`\nsecond line  '\nB=''\n")
        #expect(throws: SecretsFileError.self) { try SecretsFile(entries: [.init(key: "N", value: [0x61, 0x00])]).shellExport() }
    }

    /// The export evaluated by a real POSIX shell sets each variable to its exact value.
    @Test func shellExportEvaluatedBySh() throws {
        let value = "it's \"q\" $HOME `id` \\n\n  two  "
        let script = try SecretsFile(entries: [.init(key: "SECRET_X", value: value)]).shellExport() + "printf %s \"$SECRET_X\""
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(String(decoding: out, as: UTF8.self) == value)
    }
}

/// A small seeded generator (SplitMix64) so the property test is reproducible.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
