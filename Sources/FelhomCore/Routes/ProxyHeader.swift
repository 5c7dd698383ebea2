import Foundation

/// The PROXY protocol header (HAProxy's `doc/proxy-protocol.txt`; docs/routes.md): what the agent's
/// route proxy writes in front of a connection's first byte when a route has `proxy_protocol: "v2"`,
/// and a strict parser for v1 and v2 (tests, and a future receiver).
///
/// Pure: bytes in, bytes out. The parser never trusts a length it has not bounded: a v2 header is
/// at most 16 + 65535 bytes and a v1 line at most 107; a partial header is ``ProxyHeaderError/Code/incomplete``
/// (read more), anything else malformed is a typed error naming what is wrong.
public struct ProxyHeader: Sendable, Equatable {
    /// `\r\n\r\n\0\r\nQUIT\n`, the first 12 bytes of every v2 header.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// The 16-byte v2 LOCAL header with no addresses (health checks, the active probe).
    public static let localV2: [UInt8] = signature + [0x20, 0x00, 0x00, 0x00]

    public enum Command: UInt8, Sendable {
        case local = 0
        case proxy = 1
    }

    /// TLV types the agent writes or checks.
    public enum TLVType {
        public static let alpn: UInt8 = 0x01
        public static let authority: UInt8 = 0x02
        public static let crc32c: UInt8 = 0x03
        public static let noop: UInt8 = 0x04
        public static let uniqueID: UInt8 = 0x05
    }

    /// One end of the connection: the raw address (4 bytes IPv4, 16 bytes IPv6) and the port.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var address: [UInt8]
        public var port: UInt16
        public init(address: [UInt8], port: UInt16) {
            self.address = address
            self.port = port
        }
        /// `203.0.113.7:51234` or `[2001:db8::7]:51234`.
        public var description: String { address.count == 4 ? "\(ProxyHeader.text(address)):\(port)" : "[\(ProxyHeader.text(address))]:\(port)" }
    }

    public struct TLV: Sendable, Equatable {
        public var type: UInt8
        public var value: [UInt8]
        public init(type: UInt8, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    /// 1 or 2.
    public var version: Int
    public var command: Command
    /// Nil for LOCAL, `UNKNOWN` (v1), the unspecified or a UNIX family (v2).
    public var source: Endpoint?
    public var destination: Endpoint?
    public var tlvs: [TLV]

    public init(version: Int = 2, command: Command, source: Endpoint?, destination: Endpoint?, tlvs: [TLV] = []) {
        self.version = version
        self.command = command
        self.source = source
        self.destination = destination
        self.tlvs = tlvs
    }

    /// The `PP2_TYPE_UNIQUE_ID` value, if any.
    public var uniqueID: [UInt8]? { tlvs.first { $0.type == TLVType.uniqueID }?.value }

    // MARK: - Writing (v2)

    /// A v2 PROXY header for a TCP connection from `source` to `destination` (both IPv4 or both
    /// IPv6; a mixed pair is sent as IPv6 with the IPv4 address mapped, as HAProxy does). With
    /// `uniqueID` (≤ 128 bytes) a `PP2_TYPE_UNIQUE_ID` TLV; with `crc32c` a `PP2_TYPE_CRC32C` TLV
    /// over the whole header. The caller writes the result in one write, before any payload.
    public static func encodeV2(source: Endpoint, destination: Endpoint, uniqueID: [UInt8]? = nil, crc32c: Bool = false) -> [UInt8] {
        var src = source.address
        var dst = destination.address
        if src.count != dst.count {
            src = mapped(src)
            dst = mapped(dst)
        }
        let inet6 = src.count == 16
        var body: [UInt8] = src + dst
        body += [UInt8(source.port >> 8), UInt8(source.port & 0xFF), UInt8(destination.port >> 8), UInt8(destination.port & 0xFF)]
        var crcOffset: Int?
        if crc32c {
            crcOffset = 16 + body.count + 3
            body += [TLVType.crc32c, 0x00, 0x04, 0, 0, 0, 0]
        }
        if let id = uniqueID?.prefix(128) {
            body += [TLVType.uniqueID, UInt8(id.count >> 8), UInt8(id.count & 0xFF)] + id
        }
        var header = signature + [0x21, inet6 ? 0x21 : 0x11, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        if let at = crcOffset {
            let crc = CRC32C.checksum(header)
            header[at] = UInt8(crc >> 24)
            header[at + 1] = UInt8((crc >> 16) & 0xFF)
            header[at + 2] = UInt8((crc >> 8) & 0xFF)
            header[at + 3] = UInt8(crc & 0xFF)
        }
        return header
    }

    static func mapped(_ address: [UInt8]) -> [UInt8] {
        address.count == 4 ? [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + address : address
    }

    // MARK: - Reading (v1 and v2)

    /// Limits a receiver holds a header to (HAProxy's, where it has them).
    public enum Limits {
        public static let v1Line = 107
        public static let authority = 255
        public static let uniqueID = 128
    }

    /// Parses the header at the start of `bytes`; returns it and how many bytes it took. Throws
    /// ``ProxyHeaderError/Code/incomplete`` while the bytes so far could still become a header.
    public static func parse(_ bytes: some Collection<UInt8>) throws(ProxyHeaderError) -> (header: ProxyHeader, length: Int) {
        let b = Array(bytes.prefix(16 + 65535))
        if b.first == 0x0D { return try parseV2(b) }
        if b.first == 0x50 { return try parseV1(b) }
        if b.isEmpty { throw ProxyHeaderError(.incomplete, "no bytes yet") }
        throw ProxyHeaderError(.notProxy, "not a PROXY protocol header (starts with 0x\(String(format: "%02x", b[0])))")
    }

    static func parseV2(_ b: [UInt8]) throws(ProxyHeaderError) -> (header: ProxyHeader, length: Int) {
        let sigLength = min(b.count, 12)
        guard Array(b.prefix(sigLength)) == Array(signature.prefix(sigLength)) else {
            throw ProxyHeaderError(.notProxy, "not a PROXY protocol header (the v2 signature does not match)")
        }
        guard b.count >= 16 else { throw ProxyHeaderError(.incomplete, "a v2 header is at least 16 bytes; \(b.count) so far") }
        guard b[12] >> 4 == 2 else { throw ProxyHeaderError(.unsupportedVersion, "PROXY protocol version \(b[12] >> 4) (only 2 has this signature)") }
        guard let command = Command(rawValue: b[12] & 0x0F) else {
            throw ProxyHeaderError(.badCommand, "command 0x\(String(b[12] & 0x0F, radix: 16)) (only LOCAL 0 and PROXY 1)")
        }
        let family = b[13] >> 4
        let transport = b[13] & 0x0F
        guard family <= 3, transport <= 2 else {
            throw ProxyHeaderError(.badFamily, "address family/protocol byte 0x\(String(b[13], radix: 16)) is not defined")
        }
        let length = Int(b[14]) << 8 | Int(b[15])
        guard b.count >= 16 + length else {
            throw ProxyHeaderError(.incomplete, "the v2 header says \(16 + length) bytes; \(b.count) so far")
        }
        let block = Array(b[16..<(16 + length)])
        let addressLength: Int
        switch family {
        case 1: addressLength = 12
        case 2: addressLength = 36
        case 3: addressLength = 216
        default: addressLength = 0
        }
        var header = ProxyHeader(version: 2, command: command, source: nil, destination: nil)
        var tlvStart = 0
        if command == .proxy || addressLength > 0 {
            guard block.count >= addressLength else {
                throw ProxyHeaderError(.badLength, "the header's length \(length) is shorter than its address block (\(addressLength))")
            }
            tlvStart = addressLength
            if command == .proxy, family == 1 || family == 2 {
                let size = family == 1 ? 4 : 16
                let ports = 2 * size
                header.source = Endpoint(address: Array(block[0..<size]), port: UInt16(block[ports]) << 8 | UInt16(block[ports + 1]))
                header.destination = Endpoint(
                    address: Array(block[size..<(2 * size)]), port: UInt16(block[ports + 2]) << 8 | UInt16(block[ports + 3]))
            }
        }
        if command == .local && addressLength == 0 {
            // LOCAL: the receiver skips whatever follows, up to the length.
            return (header, 16 + length)
        }
        var i = tlvStart
        var crcAt: Int?
        while i < block.count {
            guard i + 3 <= block.count else { throw ProxyHeaderError(.badTLV, "a TLV header at offset \(16 + i) runs past the header's end") }
            let type = block[i]
            let size = Int(block[i + 1]) << 8 | Int(block[i + 2])
            guard i + 3 + size <= block.count else {
                throw ProxyHeaderError(.badTLV, "TLV 0x\(String(type, radix: 16)) of \(size) bytes runs past the header's end")
            }
            let value = Array(block[(i + 3)..<(i + 3 + size)])
            switch type {
            case TLVType.crc32c:
                guard size == 4, crcAt == nil else { throw ProxyHeaderError(.badTLV, "a CRC32C TLV is one 4-byte value") }
                crcAt = 16 + i + 3
            case TLVType.uniqueID where size > Limits.uniqueID:
                throw ProxyHeaderError(.badTLV, "UNIQUE_ID of \(size) bytes (at most \(Limits.uniqueID))")
            case TLVType.authority where size > Limits.authority:
                throw ProxyHeaderError(.badTLV, "AUTHORITY of \(size) bytes (at most \(Limits.authority))")
            default: break
            }
            header.tlvs.append(TLV(type: type, value: value))
            i += 3 + size
        }
        if let at = crcAt {
            var zeroed = Array(b[0..<(16 + length)])
            let stated = UInt32(zeroed[at]) << 24 | UInt32(zeroed[at + 1]) << 16 | UInt32(zeroed[at + 2]) << 8 | UInt32(zeroed[at + 3])
            for k in at..<(at + 4) { zeroed[k] = 0 }
            let computed = CRC32C.checksum(zeroed)
            guard computed == stated else {
                throw ProxyHeaderError(
                    .crcMismatch, "CRC32C 0x\(String(stated, radix: 16)) does not match the header (0x\(String(computed, radix: 16)))")
            }
        }
        return (header, 16 + length)
    }

    static func parseV1(_ b: [UInt8]) throws(ProxyHeaderError) -> (header: ProxyHeader, length: Int) {
        let prefix: [UInt8] = Array("PROXY ".utf8)
        let known = min(b.count, prefix.count)
        guard Array(b.prefix(known)) == Array(prefix.prefix(known)) else {
            throw ProxyHeaderError(.notProxy, "not a PROXY protocol header")
        }
        guard let lf = b.prefix(Limits.v1Line).firstIndex(of: 0x0A) else {
            if b.count >= Limits.v1Line { throw ProxyHeaderError(.badV1, "a v1 line ends within \(Limits.v1Line) bytes") }
            throw ProxyHeaderError(.incomplete, "the v1 line has not ended yet")
        }
        guard lf > 0, b[lf - 1] == 0x0D else { throw ProxyHeaderError(.badV1, "a v1 line ends with CRLF") }
        let line = String(decoding: b[0..<(lf - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        if fields.count >= 2, fields[1] == "UNKNOWN" {
            return (ProxyHeader(version: 1, command: .proxy, source: nil, destination: nil), lf + 1)
        }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6" else {
            throw ProxyHeaderError(.badV1, "a v1 line is 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' or 'PROXY UNKNOWN'")
        }
        let six = fields[1] == "TCP6"
        guard let src = address(fields[2], six: six), let dst = address(fields[3], six: six) else {
            throw ProxyHeaderError(.badV1, "the v1 addresses are not \(six ? "IPv6" : "IPv4") addresses")
        }
        guard let sport = port(fields[4]), let dport = port(fields[5]) else {
            throw ProxyHeaderError(.badV1, "the v1 ports are not 0…65535 without leading zeros")
        }
        return (
            ProxyHeader(
                version: 1, command: .proxy, source: Endpoint(address: src, port: sport), destination: Endpoint(address: dst, port: dport)),
            lf + 1
        )
    }

    static func port(_ s: String) -> UInt16? {
        guard !s.isEmpty, s.count <= 5, s.allSatisfy(\.isASCII), s.allSatisfy(\.isNumber), s == "0" || !s.hasPrefix("0") else { return nil }
        return UInt16(s)
    }

    /// The bytes of a textual address (inet_pton).
    public static func address(_ s: String, six: Bool) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: six ? 16 : 4)
        let ok = out.withUnsafeMutableBytes { inet_pton(six ? AF_INET6 : AF_INET, s, $0.baseAddress) }
        return ok == 1 ? out : nil
    }

    /// The text of an address's bytes (inet_ntop).
    public static func text(_ address: [UInt8]) -> String {
        guard address.count == 4 || address.count == 16 else { return "?" }
        var buffer = [CChar](repeating: 0, count: 64)
        let family = address.count == 4 ? AF_INET : AF_INET6
        let done = address.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard done != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Why a PROXY header was refused.
public struct ProxyHeaderError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not enough bytes yet: read more (or time out).
        case incomplete
        /// Not a PROXY header at all.
        case notProxy = "not_proxy"
        case unsupportedVersion = "unsupported_version"
        case badCommand = "bad_command"
        case badFamily = "bad_family"
        case badLength = "bad_length"
        case badTLV = "bad_tlv"
        case crcMismatch = "crc_mismatch"
        case badV1 = "bad_v1"
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF), as the
/// PROXY v2 `PP2_TYPE_CRC32C` TLV needs it. `checksum("123456789") == 0xE3069283`.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
