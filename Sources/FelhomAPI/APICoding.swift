import FelhomCore
import Foundation

/// A point in time on the wire: RFC 3339 in UTC with whole seconds (`2026-11-30T16:49:09Z`),
/// the one time format of the hub's API. Stored as seconds since 1970.
public struct Timestamp: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var secondsSince1970: Int64

    public init(secondsSince1970: Int64) { self.secondsSince1970 = secondsSince1970 }
    public init(_ date: Date) { self.secondsSince1970 = Int64(date.timeIntervalSince1970.rounded(.down)) }

    public var date: Date { Date(timeIntervalSince1970: TimeInterval(secondsSince1970)) }

    /// `2026-11-30T16:49:09Z`.
    public var rfc3339: String { RFC3339.format(date) }
    public var description: String { rfc3339 }

    /// Parses RFC 3339 (`Z` or an offset; fractional seconds are dropped).
    public init?(rfc3339 text: String) {
        guard let date = RFC3339.parse(text) else { return nil }
        self.init(date)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let parsed = Timestamp(rfc3339: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "must be an RFC 3339 time like 2026-01-01T00:00:00Z")
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rfc3339)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.secondsSince1970 < rhs.secondsSince1970 }
}

/// The JSON coding both sides of the API use: sorted keys, unescaped slashes, RFC 3339 dates.
public enum APICoding {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(RFC3339.format(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            guard let date = RFC3339.parseWholeSeconds(try container.decode(String.self)) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "must be an RFC 3339 time like 2026-01-01T00:00:00Z")
            }
            return date
        }
        return decoder
    }
}

/// Every error the hub answers: `{"error": {"code": …, "message": …, "path": …}}`.
public struct APIErrorBody: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        /// Stable, machine-readable (`bad_request`, `not_found`, `conflict`, `rate_limited`, …).
        public var code: String
        /// For a person: what is wrong and what to do.
        public var message: String
        /// For a 400: the JSON path (or query parameter) that is wrong.
        public var path: String?

        public init(code: String, message: String, path: String? = nil) {
            self.code = code
            self.message = message
            self.path = path
        }
    }

    public var error: Detail

    public init(code: String, message: String, path: String? = nil) {
        self.error = Detail(code: code, message: message, path: path)
    }
}
