import FelhomAgent
import FelhomCore
import Foundation
import Testing

/// The PROXY header codec against real bytes: vectors captured from HAProxy 2.6 as a sender and
/// hand-built headers HAProxy and nginx accepted or refused (FORMATS.md §2, copied here).
@Suite struct ProxyHeaderTests {
    static func hex(_ s: String) -> [UInt8] {
        let clean = s.filter { !$0.isWhitespace }
        return stride(from: 0, to: clean.count, by: 2).map {
            UInt8(clean[clean.index(clean.startIndex, offsetBy: $0)..<clean.index(clean.startIndex, offsetBy: $0 + 2)], radix: 16)!
        }
    }
    static let loopback: [UInt8] = [127, 0, 0, 1]
    static let v6loopback: [UInt8] = [UInt8](repeating: 0, count: 15) + [1]

    @Test func crc32cMatchesItsCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func theEncoderWritesWhatHAProxyWrites() {
        // TCP4 127.0.0.1:40001 -> 127.0.0.1:18101, captured from `send-proxy-v2`.
        let v4 = ProxyHeader.encodeV2(source: .init(address: Self.loopback, port: 40001), destination: .init(address: Self.loopback, port: 18101))
        #expect(v4 == Self.hex("0d0a0d0a000d0a515549540a 21 11 000c 7f000001 7f000001 9c41 46b5"))
        let v6 = ProxyHeader.encodeV2(
            source: .init(address: Self.v6loopback, port: 40002), destination: .init(address: Self.v6loopback, port: 18101))
        #expect(
            v6
                == Self.hex(
                    "0d0a0d0a000d0a515549540a 21 21 0024 00000000000000000000000000000001 00000000000000000000000000000001 9c42 46b5"))
        // proxy-v2-options crc32c,unique-id: HAProxy's order (CRC32C, then UNIQUE_ID) and CRC.
        let both = ProxyHeader.encodeV2(
            source: .init(address: Self.loopback, port: 40003), destination: .init(address: Self.loopback, port: 18102),
            uniqueID: Array("felhom-7F0000019C43".utf8), crc32c: true)
        #expect(
            both
                == Self.hex(
                    "0d0a0d0a000d0a515549540a 21 11 0029 7f000001 7f000001 9c43 46b6 03 0004 61abaa07 05 0013 66656c686f6d2d374630303030303139433433"
                ))
        // A mixed pair goes as IPv6 with the IPv4 address mapped.
        let mixed = ProxyHeader.encodeV2(source: .init(address: Self.loopback, port: 1), destination: .init(address: Self.v6loopback, port: 2))
        let parsed = try? ProxyHeader.parse(mixed).header
        #expect(parsed?.source?.address == [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 127, 0, 0, 1])
    }

    @Test func theParserReadsV1V2LocalAndTLVs() throws {
        let v4 = try ProxyHeader.parse(Self.hex("0d0a0d0a000d0a515549540a2111000ccb007107c6336409c82201bb") + Array("GET /".utf8))
        #expect(v4.length == 28 && v4.header.source?.description == "203.0.113.7:51234" && v4.header.destination?.description == "198.51.100.9:443")
        let local = try ProxyHeader.parse(ProxyHeader.localV2)
        #expect(local.header.command == .local && local.header.source == nil && local.length == 16)
        let crc = try ProxyHeader.parse(
            Self.hex("0d0a0d0a000d0a515549540a21110027cb007107c6336409c82201bb0200116f702e66656c686f6d2e6578616d706c650300040da6c40b"))
        #expect(crc.header.tlvs.map(\.type) == [0x02, 0x03] && crc.length == 55)
        let v1 = try ProxyHeader.parse(Array("PROXY TCP4 203.0.113.7 198.51.100.9 51234 443\r\nGET".utf8))
        #expect(v1.header.version == 1 && v1.header.source?.port == 51234 && v1.length == 47)
        let v16 = try ProxyHeader.parse(Array("PROXY TCP6 2001:db8::7 2001:db8::9 51234 443\r\n".utf8))
        #expect(v16.header.source?.description == "[2001:db8::7]:51234")
        #expect(try ProxyHeader.parse(Array("PROXY UNKNOWN\r\n".utf8)).header.source == nil)
        // Round trip of our own header with both TLVs.
        let ours = ProxyHeader.encodeV2(
            source: .init(address: [203, 0, 113, 7], port: 51234), destination: .init(address: [198, 51, 100, 9], port: 443),
            uniqueID: Array("r1-42".utf8), crc32c: true)
        #expect(try ProxyHeader.parse(ours).header.uniqueID == Array("r1-42".utf8))
    }

    @Test func malformedHeadersAreRefusedWithTheirReason() {
        func code(_ bytes: [UInt8]) -> ProxyHeaderError.Code? {
            do {
                _ = try ProxyHeader.parse(bytes)
                return nil
            } catch { return error.code }
        }
        let good = Self.hex("0d0a0d0a000d0a515549540a21110027cb007107c6336409c82201bb0200116f702e66656c686f6d2e6578616d706c650300040da6c40b")
        var wrongCRC = good
        wrongCRC[wrongCRC.count - 1] = 0x0A
        #expect(code(wrongCRC) == .crcMismatch, "HAProxy resets on it")
        var version3 = good
        version3[12] = 0x31
        #expect(code(version3) == .unsupportedVersion)
        var command2 = good
        command2[12] = 0x22
        #expect(code(command2) == .badCommand)
        var family = good
        family[13] = 0x41
        #expect(code(family) == .badFamily)
        #expect(code(Array(good.prefix(20))) == .incomplete, "a split header waits for the rest")
        #expect(code(Array(good.prefix(5))) == .incomplete)
        #expect(code([]) == .incomplete)
        #expect(code(Array("GET / HTTP/1.1\r\n".utf8)) == .notProxy)
        var longTLV = Self.hex("0d0a0d0a000d0a515549540a2111000fcb007107c6336409c82201bb 05 0010 00")
        #expect(code(longTLV) == .badTLV)
        longTLV = Self.hex("0d0a0d0a000d0a515549540a21110008cb007107c6336409")
        #expect(code(longTLV) == .badLength)
        let bigID = ProxyHeader.encodeV2(source: .init(address: Self.loopback, port: 1), destination: .init(address: Self.loopback, port: 2))
        var withBigID = Array(bigID.prefix(16 + 12)) + [0x05, 0x00, 0x81] + [UInt8](repeating: 0x41, count: 129)
        withBigID[14] = 0
        withBigID[15] = UInt8(12 + 3 + 129)
        #expect(code(withBigID) == .badTLV)
        #expect(code(Array("PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n".utf8)) == .badV1)
        #expect(code(Array("PROXY TCP4 1.2.3.4 5.6.7.8 80 443\n".utf8)) == .badV1)
        #expect(code(Array("PROXY TCP4 1.2.3.4".utf8)) == .incomplete)
        #expect(code(Array(("PROXY " + String(repeating: "A", count: 120)).utf8)) == .badV1)
    }
}
