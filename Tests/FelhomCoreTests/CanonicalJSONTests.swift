import Crypto
import Foundation
import Testing

@testable import FelhomCore

/// RFC 8785 vectors (cyberphone/json-canonicalization testdata) and the number generator checksums.
@Suite struct CanonicalJSONTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/jcs")

    @Test(arguments: ["arrays", "french", "structures", "unicode", "values", "weird"])
    func officialVectors(_ name: String) throws {
        let input = try Data(contentsOf: Self.fixtures.appendingPathComponent("input/\(name).json"))
        let expected = try Data(contentsOf: Self.fixtures.appendingPathComponent("output/\(name).json"))
        let out = try CanonicalJSON.canonicalize(Array(input))
        #expect(out == Array(expected), "\(String(decoding: out, as: UTF8.self))")
        // Canonical output is a fixed point.
        #expect(try CanonicalJSON.canonicalize(out) == out)
    }

    @Test(arguments: [
        (0x0000_0000_0000_0000 as UInt64, "0"), (0x8000_0000_0000_0000, "0"), (0x0000_0000_0000_0001, "5e-324"),
        (0x8000_0000_0000_0001, "-5e-324"), (0x7FEF_FFFF_FFFF_FFFF, "1.7976931348623157e+308"),
        (0xFFEF_FFFF_FFFF_FFFF, "-1.7976931348623157e+308"), (0x4340_0000_0000_0000, "9007199254740992"),
        (0xC340_0000_0000_0000, "-9007199254740992"), (0x4430_0000_0000_0000, "295147905179352830000"),
        (0x44B5_2D02_C7E1_4AF5, "9.999999999999997e+22"), (0x44B5_2D02_C7E1_4AF6, "1e+23"),
        (0x44B5_2D02_C7E1_4AF7, "1.0000000000000001e+23"), (0x444B_1AE4_D6E2_EF4E, "999999999999999700000"),
        (0x444B_1AE4_D6E2_EF4F, "999999999999999900000"), (0x444B_1AE4_D6E2_EF50, "1e+21"),
        (0x3EB0_C6F7_A0B5_ED8C, "9.999999999999997e-7"), (0x3EB0_C6F7_A0B5_ED8D, "0.000001"),
        (0x41B3_DE43_5555_5553, "333333333.3333332"), (0x41B3_DE43_5555_5554, "333333333.33333325"),
        (0x41B3_DE43_5555_5555, "333333333.3333333"), (0x41B3_DE43_5555_5556, "333333333.3333334"),
        (0x41B3_DE43_5555_5557, "333333333.33333343"), (0xBECB_F647_612F_3696, "-0.0000033333333333333333"),
        (0x4314_3FF3_C1CB_0959, "1424953923781206.2"), (0x3E7A_D7F2_9ABC_AF48, "1e-7"),
        (0x3EB0_C6F7_A0B5_ED8E, "0.0000010000000000000002"), (0x42F2_309C_E540_0000, "320000000000000"),
        (0x444B_1AE4_D6E2_EF51, "1.0000000000000001e+21"),
    ])
    func numberSamples(_ bits: UInt64, _ expected: String) throws {
        #expect(try CanonicalJSON.formatNumber(Double(bitPattern: bits)) == expected)
    }

    @Test func nonFiniteNumbersAreRefused() {
        #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.formatNumber(.nan) }
        #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.formatNumber(.infinity) }
    }

    /// The deterministic generator of cyberphone's testdata (numgen): a fixed list of doubles, then
    /// 2000 values from the smallest normal up, then doubles from a SHA-256 chain. The SHA-256 of the
    /// first N output lines `hex(bits),canonical\n` is published (FORMATS.md §3.2).
    static let fixed: [UInt64] = [
        0x0000000000000000, 0x8000000000000000, 0x0000000000000001, 0x8000000000000001,
        0xc46696695dbd1cc3, 0xc43211ede4974a35, 0xc3fce97ca0f21056, 0xc3c7213080c1a6ac,
        0xc39280f39a348556, 0xc35d9b1f5d20d557, 0xc327af4c4a80aaac, 0xc2f2f2a36ecd5556,
        0xc2be51057e155558, 0xc28840d131aaaaac, 0xc253670dc1555557, 0xc21f0b4935555557,
        0xc1e8d5d42aaaaaac, 0xc1b3de4355555556, 0xc17fca0555555556, 0xc1496e6aaaaaaaab,
        0xc114585555555555, 0xc0e046aaaaaaaaab, 0xc0aa0aaaaaaaaaaa, 0xc074d55555555555,
        0xc040aaaaaaaaaaab, 0xc00aaaaaaaaaaaab, 0xbfd5555555555555, 0xbfa1111111111111,
        0xbf6b4e81b4e81b4f, 0xbf35d867c3ece2a5, 0xbf0179ec9cbd821e, 0xbecbf647612f3696,
        0xbe965e9f80f29212, 0xbe61e54c672874db, 0xbe2ca213d840baf8, 0xbdf6e80fe033c8c6,
        0xbdc2533fe68fd3d2, 0xbd8d51ffd74c861c, 0xbd5774ccac3d3817, 0xbd22c3d6f030f9ac,
        0xbcee0624b3818f79, 0xbcb804ea293472c7, 0xbc833721ba905bd3, 0xbc4ebe9c5db3c61e,
        0xbc18987d17c304e5, 0xbbe3ad30dfcf371d, 0xbbaf7b816618582f, 0xbb792f9ab81379bf,
        0xbb442615600f9499, 0xbb101e77800c76e1, 0xbad9ca58cce0be35, 0xbaa4a1e0a3e6fe90,
        0xba708180831f320d, 0xba3a68cd9e985016, 0x446696695dbd1cc3, 0x443211ede4974a35,
        0x43fce97ca0f21056, 0x43c7213080c1a6ac, 0x439280f39a348556, 0x435d9b1f5d20d557,
        0x4327af4c4a80aaac, 0x42f2f2a36ecd5556, 0x42be51057e155558, 0x428840d131aaaaac,
        0x4253670dc1555557, 0x421f0b4935555557, 0x41e8d5d42aaaaaac, 0x41b3de4355555556,
        0x417fca0555555556, 0x41496e6aaaaaaaab, 0x4114585555555555, 0x40e046aaaaaaaaab,
        0x40aa0aaaaaaaaaaa, 0x4074d55555555555, 0x4040aaaaaaaaaaab, 0x400aaaaaaaaaaaab,
        0x3fd5555555555555, 0x3fa1111111111111, 0x3f6b4e81b4e81b4f, 0x3f35d867c3ece2a5,
        0x3f0179ec9cbd821e, 0x3ecbf647612f3696, 0x3e965e9f80f29212, 0x3e61e54c672874db,
        0x3e2ca213d840baf8, 0x3df6e80fe033c8c6, 0x3dc2533fe68fd3d2, 0x3d8d51ffd74c861c,
        0x3d5774ccac3d3817, 0x3d22c3d6f030f9ac, 0x3cee0624b3818f79, 0x3cb804ea293472c7,
        0x3c833721ba905bd3, 0x3c4ebe9c5db3c61e, 0x3c18987d17c304e5, 0x3be3ad30dfcf371d,
        0x3baf7b816618582f, 0x3b792f9ab81379bf, 0x3b442615600f9499, 0x3b101e77800c76e1,
        0x3ad9ca58cce0be35, 0x3aa4a1e0a3e6fe90, 0x3a708180831f320d, 0x3a3a68cd9e985016,
        0x4024000000000000, 0x4014000000000000, 0x3fe0000000000000, 0x3fa999999999999a,
        0x3f747ae147ae147b, 0x3f40624dd2f1a9fc, 0x3f0a36e2eb1c432d, 0x3ed4f8b588e368f1,
        0x3ea0c6f7a0b5ed8d, 0x3e6ad7f29abcaf48, 0x3e35798ee2308c3a, 0x3ed539223589fa95,
        0x3ed4ff26cd5a7781, 0x3ed4f95a762283ff, 0x3ed4f8c60703520c, 0x3ed4f8b72f19cd0d,
        0x3ed4f8b5b31c0c8d, 0x3ed4f8b58d1c461a, 0x3ed4f8b5894f7f0e, 0x3ed4f8b588ee37f3,
        0x3ed4f8b588e47da4, 0x3ed4f8b588e3849c, 0x3ed4f8b588e36bb5, 0x3ed4f8b588e36937,
        0x3ed4f8b588e368f8, 0x3ed4f8b588e368f1, 0x3ff0000000000000, 0xbff0000000000000,
        0xbfeffffffffffffa, 0xbfeffffffffffffb, 0x3feffffffffffffa, 0x3feffffffffffffb,
        0x3feffffffffffffc, 0x3feffffffffffffe, 0xbfefffffffffffff, 0xbfefffffffffffff,
        0x3fefffffffffffff, 0x3fefffffffffffff, 0x3fd3333333333332, 0x3fd3333333333333,
        0x3fd3333333333334, 0x0010000000000000, 0x000ffffffffffffd, 0x000fffffffffffff,
        0x7fefffffffffffff, 0xffefffffffffffff, 0x4340000000000000, 0xc340000000000000,
        0x4430000000000000, 0x44b52d02c7e14af5, 0x44b52d02c7e14af6, 0x44b52d02c7e14af7,
        0x444b1ae4d6e2ef4e, 0x444b1ae4d6e2ef4f, 0x444b1ae4d6e2ef50, 0x3eb0c6f7a0b5ed8c,
        0x3eb0c6f7a0b5ed8d, 0x41b3de4355555553, 0x41b3de4355555554, 0x41b3de4355555555,
        0x41b3de4355555556, 0x41b3de4355555557, 0xbecbf647612f3696, 0x43143ff3c1cb0959,
    ]

    static func generatorHash(lines: Int) throws -> String {
        var hash = SHA256()
        var block = [UInt8](repeating: 0, count: 32)
        var pending: [UInt64] = []
        for idx in 0..<lines {
            var bits: UInt64
            if idx < fixed.count {
                bits = fixed[idx]
            } else if idx < fixed.count + 2000 {
                bits = 0x0010_0000_0000_0000 + UInt64(idx - fixed.count)
            } else {
                repeat {
                    if pending.isEmpty {
                        block = Array(SHA256.hash(data: block))
                        pending = (0..<4).map { k in
                            (0..<8).reduce(UInt64(0)) { $0 | UInt64(block[k * 8 + $1]) << (8 * $1) }
                        }
                    }
                    bits = pending.removeFirst()
                } while Double(bitPattern: bits) == 0 || !Double(bitPattern: bits).isFinite
            }
            let line = String(bits, radix: 16) + "," + (try CanonicalJSON.formatNumber(Double(bitPattern: bits))) + "\n"
            hash.update(data: Array(line.utf8))
        }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    @Test func numberGeneratorChecksums() throws {
        #expect(Self.fixed.count == 168)
        #expect(try Self.generatorHash(lines: 1000) == "be18b62b6f69cdab33a7e0dae0d9cfa869fda80ddc712221570f9f40a5878687")
        #expect(try Self.generatorHash(lines: 100_000) == "22776e6d4b49fa294a0d0f349268e5c28808fe7e0cb2bcbe28f63894e494d4c7")
    }

    @Test(arguments: [
        (#"{"a":1,"a":2}"#, CanonicalJSONError.Code.duplicateKey, 7),
        (#"{"a":"\ud800"}"#, .invalidString, 6),
        (#"{"a":"\udc00x"}"#, .invalidString, 6),
        (#"[NaN]"#, .syntax, 1),
        (#"[Infinity]"#, .syntax, 1),
        (#"[1e400]"#, .invalidNumber, 1),
        (#"[1] x"#, .trailingData, 4),
        (#"[01]"#, .invalidNumber, 1),
        (#"{"a" 1}"#, .syntax, 5),
        ("[\"a\tb\"]", .invalidString, 3),
        (#"[1,]"#, .syntax, 3),
        ("", .syntax, 0),
    ])
    func strictParserRejects(_ text: String, _ code: CanonicalJSONError.Code, _ offset: Int) {
        let e = #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.parse(Array(text.utf8)) }
        #expect(e?.code == code)
        #expect(e?.offset == offset, "\(String(describing: e))")
    }

    @Test func depthLimitAndInvalidUTF8() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let e = #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.parse(Array(deep.utf8)) }
        #expect(e?.code == .tooDeep)
        let parsed = try CanonicalJSON.parse(Array(deep.utf8), maxDepth: 100)
        #expect(parsed != .null)
        let bad = #expect(throws: CanonicalJSONError.self) { try CanonicalJSON.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(bad?.code == .invalidString)
    }

    @Test func escapesAndSurrogatePairs() throws {
        let out = try CanonicalJSON.canonicalize(Array(#"{"k":"\ud83d\ude02\u001f\/\u2028"}"#.utf8))
        #expect(String(decoding: out, as: UTF8.self) == "{\"k\":\"😂\\u001f/\u{2028}\"}")
    }
}
