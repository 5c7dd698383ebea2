/// A strict recursive-descent JSON parser over bytes (RFC 8259 grammar, I-JSON restrictions).
struct StrictJSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var i = 0
    var depth = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func fail(_ code: CanonicalJSONError.Code, _ message: String, at offset: Int? = nil) -> CanonicalJSONError {
        CanonicalJSONError(code: code, offset: offset ?? i, message: message)
    }

    mutating func parseDocument() throws(CanonicalJSONError) -> JSONValue {
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        if i < bytes.count { throw fail(.trailingData, "unexpected data after the JSON value") }
        return v
    }

    mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
    }

    mutating func parseValue() throws(CanonicalJSONError) -> JSONValue {
        guard i < bytes.count else { throw fail(.syntax, "unexpected end of input") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default:
            throw fail(.syntax, "unexpected character '\(Self.printable(bytes[i]))'")
        }
    }

    static func printable(_ b: UInt8) -> String {
        (0x20..<0x7F).contains(b) ? String(UnicodeScalar(b)) : "\\x" + String(b, radix: 16)
    }

    mutating func literal(_ word: String, _ value: JSONValue) throws(CanonicalJSONError) -> JSONValue {
        let w = Array(word.utf8)
        guard i + w.count <= bytes.count, Array(bytes[i..<i + w.count]) == w else {
            throw fail(.syntax, "invalid literal (NaN and Infinity are not JSON)")
        }
        i += w.count
        return value
    }

    mutating func enter() throws(CanonicalJSONError) {
        depth += 1
        if depth > maxDepth { throw fail(.tooDeep, "nesting deeper than \(maxDepth) levels") }
    }

    mutating func parseObject() throws(CanonicalJSONError) -> JSONValue {
        try enter()
        i += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
            i += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail(.syntax, "expected a property name") }
            let keyOffset = i
            let key = try parseString()
            if members[key] != nil { throw fail(.duplicateKey, "duplicate property name \"\(key)\"", at: keyOffset) }
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail(.syntax, "expected ':'") }
            i += 1
            skipWhitespace()
            members[key] = try parseValue()
            skipWhitespace()
            guard i < bytes.count else { throw fail(.syntax, "unexpected end of input in an object") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "}") else { throw fail(.syntax, "expected ',' or '}'") }
            i += 1
            depth -= 1
            return .object(members)
        }
    }

    mutating func parseArray() throws(CanonicalJSONError) -> JSONValue {
        try enter()
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
            i += 1
            depth -= 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue())
            skipWhitespace()
            guard i < bytes.count else { throw fail(.syntax, "unexpected end of input in an array") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "]") else { throw fail(.syntax, "expected ',' or ']'") }
            i += 1
            depth -= 1
            return .array(items)
        }
    }

    mutating func hex4() throws(CanonicalJSONError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail(.invalidString, "truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail(.invalidString, "invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func parseString() throws(CanonicalJSONError) -> String {
        let start = i
        i += 1
        var scalars = String.UnicodeScalarView()
        var run = [UInt8]()  // raw UTF-8 bytes between escapes
        func flush(_ run: inout [UInt8], into scalars: inout String.UnicodeScalarView, at offset: Int) throws(CanonicalJSONError) {
            guard !run.isEmpty else { return }
            guard let s = String(validating: run, as: UTF8.self) else {
                throw CanonicalJSONError(code: .invalidString, offset: offset, message: "string is not valid UTF-8")
            }
            scalars.append(contentsOf: s.unicodeScalars)
            run.removeAll(keepingCapacity: true)
        }
        while true {
            guard i < bytes.count else { throw fail(.syntax, "unterminated string", at: start) }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                try flush(&run, into: &scalars, at: start)
                i += 1
                return String(scalars)
            }
            if c < 0x20 { throw fail(.invalidString, "unescaped control character in a string") }
            if c != UInt8(ascii: "\\") {
                run.append(c)
                i += 1
                continue
            }
            try flush(&run, into: &scalars, at: start)
            let escAt = i
            i += 1
            guard i < bytes.count else { throw fail(.syntax, "unterminated escape") }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                let u = try hex4()
                if (0xD800..<0xDC00).contains(u) {
                    guard i + 6 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw fail(.invalidString, "lone high surrogate \\u\(String(u, radix: 16))", at: escAt)
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else {
                        throw fail(.invalidString, "high surrogate not followed by a low surrogate", at: escAt)
                    }
                    let cp = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                    guard let scalar = Unicode.Scalar(cp) else { throw fail(.invalidString, "invalid surrogate pair", at: escAt) }
                    scalars.append(scalar)
                } else if (0xDC00..<0xE000).contains(u) {
                    throw fail(.invalidString, "lone low surrogate \\u\(String(u, radix: 16))", at: escAt)
                } else {
                    guard let scalar = Unicode.Scalar(u) else { throw fail(.invalidString, "invalid \\u escape", at: escAt) }
                    scalars.append(scalar)
                }
            default:
                throw fail(.invalidString, "invalid escape '\\\(Self.printable(e))'", at: escAt)
            }
        }
    }

    mutating func parseNumber() throws(CanonicalJSONError) -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits(_ p: inout StrictJSONParser) -> Int {
            let s = p.i
            while p.i < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.i]) { p.i += 1 }
            return p.i - s
        }
        guard i < bytes.count else { throw fail(.invalidNumber, "incomplete number", at: start) }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
                throw fail(.invalidNumber, "leading zeros are not allowed", at: start)
            }
        } else if digits(&self) == 0 {
            throw fail(.invalidNumber, "invalid number", at: start)
        }
        var integral = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            if digits(&self) == 0 { throw fail(.invalidNumber, "digits expected after '.'", at: start) }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            if digits(&self) == 0 { throw fail(.invalidNumber, "digits expected in the exponent", at: start) }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        guard let d = Double(text), d.isFinite else {
            throw fail(.invalidNumber, "number \(text) is outside the IEEE-754 double range", at: start)
        }
        if integral, abs(d) <= 9_007_199_254_740_992, let n = Int64(text) { return .int(n) }
        return .double(d)
    }
}
