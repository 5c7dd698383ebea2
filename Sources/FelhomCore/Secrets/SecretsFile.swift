import Foundation

/// A `TRC_SECRETS_V1` secrets file (SPEC §6, ADR 0010): the exact bytes a guest's apps read.
///
/// ```text
/// # TRC_SECRETS_V1
/// DATABASE_PASSWORD=  spaces are kept
/// TLS_KEY=base64:LS0tLS1CRUdJTi…
/// ```
///
/// - UTF-8 text; the first line is exactly `# TRC_SECRETS_V1`.
/// - One `KEY=VALUE` per line; KEY matches `[A-Z0-9_]+`; a key appears once.
/// - VALUE is raw: no quoting, no trimming, whitespace significant, everything after the first `=`.
/// - A value holding a newline, a carriage return, NUL or bytes that are not UTF-8 — or one that
///   itself starts with `base64:` — is written `base64:<standard base64>`, so every value reads
///   back byte for byte.
/// - Only whole lines starting with `#` are comments; empty lines are ignored.
///
/// Parsing fails on the first problem with an error naming the line number and what is wrong; it
/// never guesses. Rendering then parsing gives back the same entries (the identity the tests check).
public struct SecretsFile: Sendable, Equatable {
    /// The required first line.
    public static let header = "# TRC_SECRETS_V1"
    /// The prefix of an encoded value.
    public static let base64Prefix = "base64:"

    /// One secret: its key and its exact value bytes.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: [UInt8]
        public init(key: String, value: [UInt8]) {
            self.key = key
            self.value = value
        }
        public init(key: String, value: String) { self.init(key: key, value: Array(value.utf8)) }
    }

    /// The entries in file order.
    public var entries: [Entry]

    /// Entries given directly (rendered with ``render()``); keys are checked there.
    public init(entries: [Entry]) { self.entries = entries }

    /// The value of `key`, if present.
    public subscript(key: String) -> [UInt8]? { entries.first { $0.key == key }?.value }

    /// Whether `key` is a valid secrets key (`[A-Z0-9_]+`).
    public static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    /// Parses the file's bytes.
    public init(parsing bytes: [UInt8]) throws(SecretsFileError) {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        if lines.last == [] { lines.removeLast() }  // the newline ending the last line
        guard let first = lines.first else { throw SecretsFileError(line: 1, "the file is empty: the first line must be '\(Self.header)'") }
        guard first == Array(Self.header.utf8) else {
            let hint =
                first.starts(with: [0xEF, 0xBB, 0xBF])
                ? " (it starts with a byte-order mark)" : first.last == 0x0D ? " (it ends in CR: Windows line endings)" : ""
            throw SecretsFileError(line: 1, "the first line must be exactly '\(Self.header)'\(hint)")
        }
        var out: [Entry] = []
        var seen: [String: Int] = [:]
        for (index, raw) in lines.enumerated().dropFirst() {
            let number = index + 1
            if raw.isEmpty || raw.first == 0x23 { continue }  // empty line, whole-line comment
            guard String(validating: raw, as: UTF8.self) != nil else {
                throw SecretsFileError(line: number, "not valid UTF-8 (write binary values as base64:…)")
            }
            guard let eq = raw.firstIndex(of: 0x3D) else {
                throw SecretsFileError(line: number, "expected KEY=VALUE (no '=' on the line)")
            }
            let key = String(decoding: raw[..<eq], as: UTF8.self)
            guard Self.isValidKey(key) else {
                throw SecretsFileError(
                    line: number,
                    key.isEmpty
                        ? "the key before '=' is empty"
                        : "key '\(TerminalText.escaped(key))' must be upper-case letters, digits and '_' only ([A-Z0-9_]+)")
            }
            if let earlier = seen[key] { throw SecretsFileError(line: number, "key \(key) appears twice (first on line \(earlier))") }
            seen[key] = number
            var value = Array(raw[raw.index(after: eq)...])
            if value.starts(with: Array(Self.base64Prefix.utf8)) {
                let text = String(decoding: value.dropFirst(Self.base64Prefix.utf8.count), as: UTF8.self)
                guard let data = Data(base64Encoded: text), data.base64EncodedString() == text else {
                    throw SecretsFileError(line: number, "the value of \(key) starts with 'base64:' but the rest is not standard padded base64")
                }
                value = Array(data)
            }
            out.append(Entry(key: key, value: value))
        }
        entries = out
    }

    /// Whether a value must be written as `base64:…` to read back exactly.
    public static func needsEncoding(_ value: [UInt8]) -> Bool {
        value.contains(0x0A) || value.contains(0x0D) || value.contains(0x00) || String(validating: value, as: UTF8.self) == nil
            || value.starts(with: Array(base64Prefix.utf8))
    }

    /// The exact file bytes: header, one line per entry in order, each ending in `\n`.
    public func render() throws(SecretsFileError) -> [UInt8] {
        var out = Array((Self.header + "\n").utf8)
        var seen = Set<String>()
        for (i, e) in entries.enumerated() {
            guard Self.isValidKey(e.key) else {
                throw SecretsFileError(line: i + 2, "key '\(TerminalText.escaped(e.key))' must match [A-Z0-9_]+")
            }
            guard seen.insert(e.key).inserted else { throw SecretsFileError(line: i + 2, "key \(e.key) appears twice") }
            out += Array(e.key.utf8) + [0x3D]
            if Self.needsEncoding(e.value) {
                out += Array((Self.base64Prefix + Data(e.value).base64EncodedString()).utf8)
            } else {
                out += e.value
            }
            out.append(0x0A)
        }
        return out
    }

    /// POSIX sh assignments, one per entry: `KEY='value'` with `'` written `'\''`, so that
    /// `eval "$(felhom secrets export FILE)"` sets each variable to its exact value (newlines and
    /// whitespace included). A value with a NUL byte cannot be a shell variable: an error.
    public func shellExport() throws(SecretsFileError) -> String {
        var out = ""
        for e in entries {
            guard !e.value.contains(0) else {
                throw SecretsFileError(line: nil, "the value of \(e.key) holds a NUL byte, which no shell variable can hold", code: .notExportable)
            }
            let text = String(decoding: e.value, as: UTF8.self)
            guard Array(text.utf8) == e.value else {
                throw SecretsFileError(line: nil, "the value of \(e.key) is not UTF-8 text; read it from the file instead", code: .notExportable)
            }
            out += "\(e.key)='" + text.replacingOccurrences(of: "'", with: "'\\''") + "'\n"
        }
        return out
    }
}

/// What is wrong with a secrets file, and on which line (1-based) when it is about one.
public struct SecretsFileError: Error, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file (or an entry to render) breaks a rule of the format.
        case invalid
        /// A value cannot be a shell variable (`shellExport`).
        case notExportable
    }
    public var code: Code
    public var line: Int?
    public var message: String
    public init(line: Int?, _ message: String, code: Code = .invalid) {
        self.code = code
        self.line = line
        self.message = message
    }
    public var description: String { line.map { "line \($0): \(message)" } ?? message }
}
