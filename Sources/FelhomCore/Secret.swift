/// A secret string (token, password, key) that never prints itself.
///
/// `description`, `debugDescription` and string interpolation show `<redacted>`; only `reveal()`
/// gives the value, so a secret cannot reach a log line or an error message by accident.
public struct Secret: Sendable, Hashable, Codable, CustomStringConvertible, CustomDebugStringConvertible {
    private let value: String

    public init(_ value: String) { self.value = value }

    /// The secret value. Call only where the value is really needed (an auth header, a file).
    public func reveal() -> String { value }

    /// True when the secret is the empty string.
    public var isEmpty: Bool { value.isEmpty }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }

    public init(from decoder: Decoder) throws {
        value = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}
