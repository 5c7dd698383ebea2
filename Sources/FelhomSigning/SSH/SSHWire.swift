/// Reads SSH wire encoding (RFC 4251 §5): `uint32`, `string`, `mpint`, bytes.
struct SSHWireReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }
    var remaining: Int { bytes.count - offset }

    mutating func readBytes(_ n: Int) throws(SignatureError) -> [UInt8] {
        guard n >= 0, n <= remaining else { throw SignatureError(.malformed, "truncated SSH data (wanted \(n) bytes at \(offset))") }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func readUInt32() throws(SignatureError) -> UInt32 {
        let b = try readBytes(4)
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }

    mutating func readByte() throws(SignatureError) -> UInt8 { try readBytes(1)[0] }

    mutating func readString() throws(SignatureError) -> [UInt8] {
        let n = try readUInt32()
        guard n <= UInt32(remaining) else { throw SignatureError(.malformed, "SSH string length \(n) exceeds the data") }
        return try readBytes(Int(n))
    }

    /// A string that must be text without NUL (like OpenSSH's `sshbuf_get_cstring`).
    mutating func readText() throws(SignatureError) -> String {
        let b = try readString()
        guard !b.contains(0), let s = String(validating: b, as: UTF8.self) else {
            throw SignatureError(.malformed, "SSH text field is not valid UTF-8 or contains NUL")
        }
        return s
    }

    /// A positive mpint as big-endian magnitude bytes without leading zeros.
    mutating func readPositiveMPInt(maxBytes: Int = 2049) throws(SignatureError) -> [UInt8] {
        let b = try readString()
        guard b.count <= maxBytes else { throw SignatureError(.malformed, "mpint too large") }
        if let first = b.first, first & 0x80 != 0 { throw SignatureError(.malformed, "negative mpint") }
        return Array(b.drop { $0 == 0 })
    }
}

/// Writes SSH wire encoding.
struct SSHWireWriter {
    var bytes: [UInt8] = []

    mutating func writeUInt32(_ v: UInt32) {
        bytes += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    mutating func writeString(_ b: [UInt8]) {
        writeUInt32(UInt32(b.count))
        bytes += b
    }

    mutating func writeString(_ s: String) { writeString(Array(s.utf8)) }

    /// A positive integer from big-endian magnitude bytes, with a leading 0 when the top bit is set.
    mutating func writeMPInt(_ magnitude: [UInt8]) {
        var m = Array(magnitude.drop { $0 == 0 })
        if let f = m.first, f & 0x80 != 0 { m.insert(0, at: 0) }
        writeString(m)
    }
}
