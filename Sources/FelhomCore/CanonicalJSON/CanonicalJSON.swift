/// RFC 8785 JSON Canonicalization Scheme: a strict I-JSON parser and the canonical serializer.
///
/// The op blobs the operator signs are canonical JSON, so the hub, the CLI and the agent produce
/// byte-identical bytes. Foundation cannot do this: its encoders sort keys by code point or locale,
/// escape `/` and print `1e-06`, and its parsers silently accept duplicate keys.
public enum CanonicalJSON {
    /// Default limit on nesting depth (objects and arrays).
    public static let defaultMaxDepth = 64

    /// Parses strict I-JSON: no duplicate keys, no lone surrogates, no NaN/Infinity or numbers that
    /// overflow a double, no trailing bytes, nesting at most `maxDepth`. Errors carry the byte offset.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(CanonicalJSONError) -> JSONValue {
        var p = StrictJSONParser(bytes: bytes, maxDepth: maxDepth)
        return try p.parseDocument()
    }

    /// The canonical UTF-8 bytes of `value`. Throws for non-finite numbers.
    public static func serialize(_ value: JSONValue) throws(CanonicalJSONError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        try write(value, into: &out)
        return out
    }

    /// Parses then serializes: the canonical form of a JSON text.
    public static func canonicalize(_ bytes: [UInt8]) throws(CanonicalJSONError) -> [UInt8] {
        try serialize(parse(bytes))
    }

    static func write(_ value: JSONValue, into out: inout [UInt8]) throws(CanonicalJSONError) {
        switch value {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(try formatNumber(Double(i)).utf8)
        case .double(let d): out += Array(try formatNumber(d).utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                try write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // §3.2.3: sort by the UTF-16 code units of the unescaped names, compared as unsigned integers.
            let keys = members.keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                // Keys come from the dictionary itself, so the lookup cannot miss.
                try write(members[key] ?? .null, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// §3.2.2.2: JSON.stringify's escaping: `"`, `\`, the five short control escapes, other
    /// controls as lower-case `\u00xx`; everything else (including `/` and U+2028) raw UTF-8.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar.value {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(scalar.value >> 4)], hex[Int(scalar.value & 0xF)]]
            default:
                out += Array(String(scalar).utf8)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// §3.2.2.3: ECMAScript Number::toString of a finite double (shortest round-trip digits).
    public static func formatNumber(_ d: Double) throws(CanonicalJSONError) -> String {
        guard d.isFinite else {
            throw CanonicalJSONError(code: .invalidNumber, offset: nil, message: "\(d) cannot be represented in canonical JSON")
        }
        if d == 0 { return "0" }  // also -0
        // Swift's description has the shortest round-trip digits, in its own layout
        // ("1e-06", "9007199254740992.0", "2.9514790517935283e+20"): re-lay them out.
        let text = abs(d).description
        let parts = text.split(separator: "e", maxSplits: 1)
        let mantissa = parts[0]
        let exp10 = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        let dot = mantissa.firstIndex(of: ".")
        let intPart = dot.map { mantissa[..<$0] } ?? mantissa
        let fracPart = dot.map { mantissa[mantissa.index(after: $0)...] } ?? ""
        var digits = Array(intPart) + Array(fracPart)
        var n = intPart.count + exp10  // decimal point position: value = 0.digits × 10^n
        while digits.first == "0" {
            digits.removeFirst()
            n -= 1
        }
        while digits.last == "0" { digits.removeLast() }
        let k = digits.count
        let ds = String(digits)
        var out: String
        if k <= n && n <= 21 {
            out = ds + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            out = String(digits[0..<n]) + "." + String(digits[n...])
        } else if -6 < n && n <= 0 {
            out = "0." + String(repeating: "0", count: -n) + ds
        } else {
            let e = n - 1
            out = String(digits[0]) + (k > 1 ? "." + String(digits[1...]) : "") + "e" + (e >= 0 ? "+" : "-") + String(abs(e))
        }
        return d < 0 ? "-" + out : out
    }
}

/// Why a JSON text is not acceptable I-JSON, and where.
public struct CanonicalJSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable {
        case syntax, duplicateKey, invalidString, invalidNumber, tooDeep, trailingData
    }
    public var code: Code
    /// Byte offset into the input (nil for serializer errors).
    public var offset: Int?
    public var message: String

    public var description: String {
        offset.map { "invalid JSON at byte \($0): \(message)" } ?? "invalid JSON value: \(message)"
    }
}
