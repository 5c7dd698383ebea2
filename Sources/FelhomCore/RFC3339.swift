import Foundation

/// RFC 3339 times (`2026-11-30T16:49:09Z`, `2026-11-30t17:49:09.25+01:00`): the one parser for every
/// time the platform reads — reports, API bodies, query parameters. Formatting is always UTC with
/// whole seconds (`…Z`).
public enum RFC3339 {
    /// Parses `date-time` of RFC 3339 §5.6 (`T`/`t`/space separator, optional fraction, `Z`/`z` or an
    /// offset). A leap second (`:60`) reads as `:59`. `nil` for anything else.
    public static func parse(_ text: String) -> Date? { parse(text, keepingFraction: true) }

    /// Parses like ``parse(_:)`` and drops the fraction of a second: the wire's times are whole
    /// seconds (``format(_:)``), so what a receiver stores encodes back to an equal value.
    public static func parseWholeSeconds(_ text: String) -> Date? { parse(text, keepingFraction: false) }

    private static func parse(_ text: String, keepingFraction: Bool) -> Date? {
        let bytes = Array(text.utf8)
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + count] {
                guard (48...57).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            index += count
            return value
        }
        func expect(_ allowed: Set<UInt8>) -> Bool {
            guard index < bytes.count, allowed.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), expect([45]), let month = digits(2), expect([45]), let day = digits(2),
            expect([84, 116, 32]), let hour = digits(2), expect([58]), let minute = digits(2), expect([58]), let second = digits(2)
        else { return nil }
        var fraction = 0.0
        if index < bytes.count, bytes[index] == 46 {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, (48...57).contains(bytes[index]) {
                fraction += Double(bytes[index] - 48) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offset = 0
        if expect([90, 122]) {
            offset = 0
        } else if index < bytes.count, bytes[index] == 43 || bytes[index] == 45 {
            let sign = bytes[index] == 45 ? -1 : 1
            index += 1
            guard let offsetHours = digits(2), expect([58]), let offsetMinutes = digits(2), offsetHours <= 23, offsetMinutes <= 59 else { return nil }
            offset = sign * (offsetHours * 3600 + offsetMinutes * 60)
        } else {
            return nil
        }
        guard index == bytes.count, (1...12).contains(month), hour <= 23, minute <= 59, second <= 60 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 0) ?? calendar.timeZone
        guard let range = calendar.range(of: .day, in: .month, for: calendar.date(from: DateComponents(year: year, month: month, day: 1)) ?? Date()),
            range.contains(day),
            let base = calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: min(second, 59)))
        else { return nil }
        return base.addingTimeInterval((keepingFraction ? fraction : 0) - TimeInterval(offset))
    }

    /// `2026-11-30T16:49:09Z` (UTC, whole seconds).
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(timeZone: .gmt))
    }
}
